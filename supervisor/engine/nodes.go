package engine

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"strings"

	"github.com/cairn-os/cairn/supervisor/store"
)

// LocalNodeID is the ID of the admin node's own compute role.
const LocalNodeID = "admin"

// nodeOwner owns every node.
const nodeOwner = "admin"

// NodeID is the ID a node with this MAC gets: "n-" and the MAC's hex digits.
func NodeID(mac net.HardwareAddr) string { return "n-" + hex.EncodeToString(mac) }

// Nodes lists the engine's nodes, the admin node first.
func (e *Engine) Nodes(ctx context.Context, u User) ([]Node, error) {
	if err := requireUser(u, "list nodes"); err != nil {
		return nil, err
	}
	nodes, err := store.List[Node](e.store, bucketNodes)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return nodes, nil
}

// Node returns one node.
func (e *Engine) Node(ctx context.Context, u User, id string) (Node, error) {
	if err := requireUser(u, "show node"); err != nil {
		return Node{}, err
	}
	var n Node
	if err := e.store.Get(bucketNodes, id, &n); err != nil {
		return Node{}, fmt.Errorf("node %q: %w", id, notFound(err))
	}
	return n, nil
}

// SetNodeMaintenance puts a node into maintenance (on) or takes it out (off: ready,
// or down when it has stopped beating). Only admins may. A node in maintenance keeps
// beating and still boots, but the health manager leaves its state alone.
func (e *Engine) SetNodeMaintenance(ctx context.Context, u User, id string, on bool) (Node, error) {
	op := fmt.Sprintf("set maintenance of node %q", id)
	if err := requireAdmin(u, op); err != nil {
		return Node{}, err
	}
	var n Node
	err := e.store.Update(func(tx *store.Tx) error {
		if err := tx.Get(bucketNodes, id, &n); err != nil {
			return fmt.Errorf("%s: %w", op, notFound(err))
		}
		switch {
		case on:
			n.State = NodeMaintenance
		case e.stale(n):
			n.State = NodeDown
		default:
			n.State = NodeReady
		}
		return tx.Put(bucketNodes, id, n)
	})
	if err != nil {
		return Node{}, err
	}
	e.log.Info("node state set", "node", id, "state", n.State, "by", u.Name)
	return n, nil
}

// NodeUpdate changes a node; fields left out stay as they are.
type NodeUpdate struct {
	// Name is the node's name in the console, the API and the CLI: 1 to 63 letters,
	// digits, dots, dashes and underscores, starting with a letter or digit, unique
	// among the nodes. It stays over the node's reboots.
	Name *string `json:"name,omitempty"`
}

// UpdateNode renames a node. Only admins may.
func (e *Engine) UpdateNode(ctx context.Context, u User, id string, upd NodeUpdate) (Node, error) {
	op := fmt.Sprintf("update node %q", id)
	if err := requireAdmin(u, op); err != nil {
		return Node{}, err
	}
	if upd.Name == nil {
		return Node{}, fmt.Errorf("%s: %w: nothing to change; send a name", op, ErrInvalid)
	}
	name := strings.TrimSpace(*upd.Name)
	if err := checkNodeName(name); err != nil {
		return Node{}, fmt.Errorf("%s: %w", op, err)
	}
	var n Node
	err := e.store.Update(func(tx *store.Tx) error {
		if err := tx.Get(bucketNodes, id, &n); err != nil {
			return fmt.Errorf("%s: %w", op, notFound(err))
		}
		nodes, err := store.ListTx[Node](tx, bucketNodes)
		if err != nil {
			return err
		}
		for _, o := range nodes {
			if o.ID != id && strings.EqualFold(o.Name, name) {
				return fmt.Errorf("%s: %w: node %s is named %q already; choose another name", op, ErrExists, o.ID, o.Name)
			}
		}
		n.Name, n.Named = name, true
		return tx.Put(bucketNodes, id, n)
	})
	if err != nil {
		return Node{}, err
	}
	e.log.Info("node renamed", "node", id, "name", name, "by", u.Name)
	return n, nil
}

// checkNodeName says what is wrong with a node name, if anything.
func checkNodeName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("%w: a node name has 1 to 63 characters", ErrInvalid)
	}
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '-' && c != '.' && c != '_')) {
			return fmt.Errorf("%w: node name %q: use letters, digits, dots, dashes and underscores, starting with a letter or digit", ErrInvalid, name)
		}
	}
	return nil
}

// RegisterLocalNode records the admin node's own compute role as node "admin" with
// roles admin and compute. The supervisor then calls LocalHeartbeat.
func (e *Engine) RegisterLocalNode(ctx context.Context, req JoinRequest) (Node, error) {
	n, _, err := e.putJoined(LocalNodeID, req, []string{NodeRoleAdmin, NodeRoleCompute})
	if err != nil {
		return Node{}, fmt.Errorf("register local node: %w", err)
	}
	return n, nil
}

// LocalHeartbeat is the admin node's own heartbeat.
func (e *Engine) LocalHeartbeat(ctx context.Context, hb Heartbeat) error {
	_, err := e.Heartbeat(ctx, LocalNodeID, hb)
	return err
}

// Join admits a compute node that presents the join token: it records the node (a
// node that joined before keeps its ID and record) and signs its certificate.
func (e *Engine) Join(ctx context.Context, token string, req JoinRequest) (JoinResponse, error) {
	if subtle.ConstantTimeCompare([]byte(token), []byte(e.joinToken)) != 1 {
		return JoinResponse{}, fmt.Errorf("join: %w: the join token is wrong; boot the node from this engine's PXE service", ErrUnauthorized)
	}
	mac, err := net.ParseMAC(req.MAC)
	if err != nil || len(mac) != 6 {
		return JoinResponse{}, fmt.Errorf("join %q: %w: mac must be an Ethernet address like 52:54:00:12:34:56", req.MAC, ErrInvalid)
	}
	id := NodeID(mac)
	req.MAC = mac.String()
	ip := net.ParseIP(req.Address)
	if ip == nil {
		return JoinResponse{}, fmt.Errorf("join %s: %w: address %q must be the node's LAN IP address", id, ErrInvalid, req.Address)
	}
	if strings.TrimSpace(req.CSR) == "" {
		return JoinResponse{}, fmt.Errorf("join %s: %w: send a PEM certificate request (csr) for the node's key", id, ErrInvalid)
	}
	cert, err := e.ca.SignNodeCSR(req.CSR, id, []net.IP{ip})
	if err != nil {
		return JoinResponse{}, fmt.Errorf("join %s: %w: %v", id, ErrInvalid, err)
	}
	n, rejoin, err := e.putJoined(id, req, []string{NodeRoleCompute})
	if err != nil {
		return JoinResponse{}, fmt.Errorf("join %s: %w", id, err)
	}
	e.log.Info("node joined", "node", id, "address", n.Address, "rejoin", rejoin)
	e.probe(n)
	e.ensureWatcher(id)
	return JoinResponse{
		Node:             n,
		Certificate:      cert,
		CA:               string(e.ca.CertPEM()),
		HeartbeatSeconds: e.heartbeatSeconds(),
		Pools:            e.poolExports(),
		LocalDir:         e.cfg.LocalDir,
	}, nil
}

// putJoined stores the record of a node that joins (or the local node), keeping the
// ID, join time, libvirt version and maintenance of an earlier record.
func (e *Engine) putJoined(id string, req JoinRequest, roles []string) (Node, bool, error) {
	name := strings.TrimSpace(req.Name)
	if name == "" || len(name) > 64 {
		name = id
	}
	if req.CPUs < 0 {
		return Node{}, false, fmt.Errorf("%w: cpus must not be negative", ErrInvalid)
	}
	now := e.now()
	var n Node
	rejoin := false
	err := e.store.Update(func(tx *store.Tx) error {
		var old Node
		if err := tx.Get(bucketNodes, id, &old); err == nil {
			rejoin = true
		} else if !isNotFound(err) {
			return err
		}
		n = Node{
			ID:              id,
			Name:            name,
			MAC:             req.MAC,
			Address:         req.Address,
			Roles:           roles,
			State:           NodeReady,
			CPUs:            req.CPUs,
			MemoryBytes:     req.MemoryBytes,
			MemoryFreeBytes: req.MemoryBytes,
			Disks:           req.Disks,
			NICs:            req.NICs,
			KVM:             req.KVM,
			Version:         req.Version,
			JoinedAt:        now,
			LastSeen:        now,
			Owner:           nodeOwner,
		}
		if rejoin {
			n.JoinedAt, n.Libvirt = old.JoinedAt, old.Libvirt
			if old.Named {
				n.Name, n.Named = old.Name, true
			}
			if old.State == NodeMaintenance {
				n.State = NodeMaintenance
			}
		}
		return tx.Put(bucketNodes, id, n)
	})
	return n, rejoin, err
}

// Heartbeat records a beat of node nodeID and returns the interval, in seconds, at
// which the node should beat. It brings a down node back to ready unless the node is
// in maintenance.
func (e *Engine) Heartbeat(ctx context.Context, nodeID string, hb Heartbeat) (int, error) {
	op := fmt.Sprintf("heartbeat of node %q", nodeID)
	if hb.Address != "" && net.ParseIP(hb.Address) == nil {
		return 0, fmt.Errorf("%s: %w: address %q is not an IP address", op, ErrInvalid, hb.Address)
	}
	var n Node
	var was NodeState
	err := e.store.Update(func(tx *store.Tx) error {
		if err := tx.Get(bucketNodes, nodeID, &n); err != nil {
			return fmt.Errorf("%s: %w: join first", op, notFound(err))
		}
		was = n.State
		if n.State != NodeMaintenance {
			n.State = NodeReady
		}
		if hb.Address != "" {
			n.Address = hb.Address
		}
		if hb.CPUs > 0 {
			n.CPUs = hb.CPUs
		}
		if hb.MemoryBytes > 0 {
			n.MemoryBytes = hb.MemoryBytes
		}
		n.MemoryFreeBytes = hb.MemoryFreeBytes
		n.Load1 = hb.Load1
		n.LastSeen = e.now()
		return tx.Put(bucketNodes, nodeID, n)
	})
	if err != nil {
		return 0, err
	}
	if was == NodeDown && n.State == NodeReady {
		e.log.Info("node back", "node", nodeID, "address", n.Address)
	}
	e.ensureWatcher(nodeID)
	e.checkNetworkVersion(n, hb.NetworkVersion)
	e.beatsMu.Lock()
	e.beats[nodeID]++
	// Until the node's libvirtd has answered once (it starts alongside the agent),
	// ask on every other beat; afterwards every probeEvery beats.
	beats := e.beats[nodeID]
	probe := beats%probeEvery == 0 || (n.Libvirt == "" && beats%2 == 1)
	e.beatsMu.Unlock()
	if probe {
		e.probe(n)
	}
	return e.heartbeatSeconds(), nil
}

// Plan is the PXE decision for a machine that boots from the network: "compute",
// with the kernel arguments that make it join this engine. A node in maintenance
// still boots, so that it can be looked at.
func (e *Engine) Plan(ctx context.Context, mac net.HardwareAddr) (string, []string, error) {
	if len(mac) != 6 {
		return "", nil, fmt.Errorf("plan boot of %q: %w: not an Ethernet address", mac, ErrInvalid)
	}
	if e.cfg.LANURL == "" {
		return "", nil, fmt.Errorf("plan boot of %s: %w: the engine has no LAN URL; set the admin's LAN address", mac, ErrInvalid)
	}
	return "compute", []string{
		"cairn.role=compute",
		"cairn.admin=" + e.cfg.LANURL,
		"cairn.token=" + e.joinToken,
		"cairn.ca=" + e.ca.Fingerprint(),
	}, nil
}

func (e *Engine) heartbeatSeconds() int {
	s := int(e.cfg.HeartbeatInterval.Seconds())
	return max(s, 1)
}

// stale reports whether n has missed enough beats to count as down.
func (e *Engine) stale(n Node) bool {
	return e.now().Sub(n.LastSeen) > missedBeats*e.cfg.HeartbeatInterval
}
