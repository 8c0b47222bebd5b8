package networks

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/images"
	"github.com/cairn-os/cairn/ui/layout"
)

// PortsHint is how a mapping's port list is written, shown beside its fields.
const PortsHint = "80,443,192.168.0.0/16:445"

// connForm is what the create form holds, kept when the engine refuses it.
type connForm struct {
	Name, Kind, Network, Address, External, Ports, Server string
	Error                                                 string
}

// connectionsView is what the Connections page shows.
type connectionsView struct {
	Viewer layout.Viewer
	Conns  []engine.Connection
	// Networks are the networks the viewer sees, by number; Own are the viewer's own
	// internal networks, which the create form offers.
	Networks map[int]engine.Network
	Own      []engine.Network
	// Servers are the servers the viewer sees, sorted by name.
	Servers []engine.Server
	Owners  map[string]string
	Usage   *engine.Usage
	// ExternalRange is the configured range of external addresses ("" for none).
	ExternalRange string
	Form          connForm
	Done          string
	Alert         string
	// Warn is an action that went through only in part (a NIC the guest kept).
	Warn string
}

// Connections serves GET /connections.
func (h *Handlers) Connections(w http.ResponseWriter, r *http.Request) {
	h.connections(w, r, http.StatusOK, connForm{Kind: string(engine.ConnInternal)}, "", "")
}

func (h *Handlers) connections(w http.ResponseWriter, r *http.Request, status int, form connForm, alert, warn string) {
	ctx := r.Context()
	v, _ := layout.ViewerFrom(ctx)
	conns, err := h.svc.Connections(ctx, v.User)
	if err != nil {
		h.fail(w, r, "list connections", err)
		return
	}
	nets, err := h.svc.Networks(ctx, v.User)
	if err != nil {
		h.fail(w, r, "list networks", err)
		return
	}
	cv := connectionsView{Viewer: v, Conns: sortedConnections(conns), Networks: map[int]engine.Network{},
		Owners: layout.UserNames(ctx, h.svc, v), Form: form, Alert: alert, Warn: warn,
		Done: connDoneMessages[r.URL.Query().Get("done")]}
	for _, n := range sortedNetworks(nets) {
		cv.Networks[n.ID] = n
		if n.Kind == engine.NetworkInternal && n.Owner == v.User.ID {
			cv.Own = append(cv.Own, n)
		}
	}
	if servers, err := h.svc.Servers(ctx, v.User); err != nil {
		h.logger.Warn("list servers for connections", "user", v.User.Name, "err", err)
	} else {
		cv.Servers = sortedServers(servers)
	}
	if st, err := h.svc.Settings(ctx, v.User); err == nil {
		cv.ExternalRange = st.ExternalRange
	}
	cv.Usage = h.usage(ctx, v)
	layout.Render(w, r, h.logger, status, layout.Page{Title: "Connections", Section: "connections", Content: connectionsPage(cv)})
}

// request is the engine's request for the form: the network only for the kinds on
// an internal network, the external address and ports only for mappings (the form
// hides the fields that do not apply, but a browser without :has() sends them all).
func (f connForm) request() (engine.ConnectionRequest, error) {
	req := engine.ConnectionRequest{Name: f.Name, Kind: engine.ConnectionKind(f.Kind), Address: f.Address, Server: f.Server}
	switch req.Kind {
	case engine.ConnInternal, engine.ConnMapping:
		if f.Network == "" {
			return req, refusal("Choose the network the connection is on. Make one on the Networks page first if you have none.")
		}
		id, err := engine.ParseNetworkID(f.Network)
		if err != nil {
			return req, err
		}
		req.Network = id
		if req.Kind == engine.ConnMapping {
			req.External, req.Ports = f.External, f.Ports
		}
	case engine.ConnExternal:
		if req.Address == "" {
			req.Address = f.External
		}
	}
	return req, nil
}

// CreateConnection serves POST /connections: name, kind, network, address,
// external, ports and server (empty: not attached).
func (h *Handlers) CreateConnection(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	f, ok := h.parse(w, r)
	if !ok {
		return
	}
	form := connForm{Name: strings.TrimSpace(f.Get("name")), Kind: f.Get("kind"), Network: f.Get("network"),
		Address: strings.TrimSpace(f.Get("address")), External: strings.TrimSpace(f.Get("external")),
		Ports: strings.TrimSpace(f.Get("ports")), Server: f.Get("server")}
	c, err := func() (engine.Connection, error) {
		req, err := form.request()
		if err != nil {
			return engine.Connection{}, err
		}
		return h.svc.CreateConnection(r.Context(), v.User, req)
	}()
	if err != nil {
		var status int
		status, form.Error = images.Refuse(h.logger, r, "create connection", err)
		h.connections(w, r, status, form, "", "")
		return
	}
	h.logger.Info("connection created", "connection", c.ID, "kind", c.Kind, "user", v.User.Name)
	http.Redirect(w, r, images.WithQuery("/connections", "done", "created")+"#"+connAnchor(c.ID), http.StatusSeeOther)
}

// Attach serves POST /connections/{id}/attach (field server).
func (h *Handlers) Attach(w http.ResponseWriter, r *http.Request) {
	h.connAction(w, r, "attach connection", "attached", func(ctx context.Context, u engine.User, id string, f url.Values) error {
		if f.Get("server") == "" {
			return refusal("Choose the server to attach the connection to.")
		}
		_, err := h.svc.AttachConnection(ctx, u, id, f.Get("server"))
		return err
	})
}

// Detach serves POST /connections/{id}/detach. When the guest keeps the NIC the
// engine detaches it all the same and says so (as in use): the page shows that as a
// warning, with the engine's status.
func (h *Handlers) Detach(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	if _, ok := h.parse(w, r); !ok {
		return
	}
	id := r.PathValue("id")
	c, err := h.svc.DetachConnection(r.Context(), v.User, id)
	switch {
	case err != nil && c.ID != "":
		h.logger.Warn("detach connection: the guest kept the NIC", "connection", id, "err", err)
		h.connections(w, r, layout.StatusOf(err), connForm{Kind: string(engine.ConnInternal)}, "", err.Error())
	case err != nil:
		status, msg := images.Refuse(h.logger, r, "detach connection", err)
		h.connections(w, r, status, connForm{Kind: string(engine.ConnInternal)}, msg, "")
	default:
		http.Redirect(w, r, images.WithQuery("/connections", "done", "detached")+"#"+connAnchor(id), http.StatusSeeOther)
	}
}

// Ports serves POST /connections/{id}/ports (field ports; empty forwards all).
func (h *Handlers) Ports(w http.ResponseWriter, r *http.Request) {
	h.connAction(w, r, "change ports", "ports", func(ctx context.Context, u engine.User, id string, f url.Values) error {
		ports := strings.TrimSpace(f.Get("ports"))
		_, err := h.svc.UpdateConnection(ctx, u, id, engine.ConnectionUpdate{Ports: &ports})
		return err
	})
}

// RenameConnection serves POST /connections/{id}/rename (field name).
func (h *Handlers) RenameConnection(w http.ResponseWriter, r *http.Request) {
	h.connAction(w, r, "rename connection", "renamed", func(ctx context.Context, u engine.User, id string, f url.Values) error {
		name := strings.TrimSpace(f.Get("name"))
		_, err := h.svc.UpdateConnection(ctx, u, id, engine.ConnectionUpdate{Name: &name})
		return err
	})
}

// DeleteConnection serves POST /connections/{id}/delete; the form must carry
// confirm=yes.
func (h *Handlers) DeleteConnection(w http.ResponseWriter, r *http.Request) {
	h.connAction(w, r, "delete connection", "deleted", func(ctx context.Context, u engine.User, id string, f url.Values) error {
		if f.Get("confirm") != "yes" {
			return refusal("Tick the box to confirm that connection " + id + " is to be deleted.")
		}
		return h.svc.DeleteConnection(ctx, u, id)
	})
}

// Messages after an action went through, by the "done" query parameter.
var connDoneMessages = map[string]string{
	"created":  "The connection was created.",
	"attached": "The connection was attached. A running server has the new interface now.",
	"detached": "The connection was detached; it keeps its addresses.",
	"ports":    "The port list was saved.",
	"renamed":  "The connection was renamed.",
	"deleted":  "The connection was deleted; its addresses are free again.",
}

// connAction runs a form of one connection and goes back to the Connections page
// with done; a refusal shows the page again with the engine's message.
func (h *Handlers) connAction(w http.ResponseWriter, r *http.Request, op, done string, do func(ctx context.Context, u engine.User, id string, f url.Values) error) {
	v, _ := layout.ViewerFrom(r.Context())
	f, ok := h.parse(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if err := do(r.Context(), v.User, id, f); err != nil {
		status, msg := images.Refuse(h.logger, r, op, err)
		h.connections(w, r, status, connForm{Kind: string(engine.ConnInternal)}, msg, "")
		return
	}
	next := images.WithQuery("/connections", "done", done)
	if done != "deleted" {
		next += "#" + connAnchor(id)
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// ConnectionURL is where a connection is shown: its row on the Connections page.
func ConnectionURL(id string) string { return "/connections#" + connAnchor(id) }

// NetworkURL is where a network is shown: its row on the Networks page.
func NetworkURL(id int) string { return "/networks#" + networkAnchor(id) }

func connAnchor(id string) string { return "connection-" + id }

func networkAnchor(id int) string { return "network-" + strconv.Itoa(id) }
