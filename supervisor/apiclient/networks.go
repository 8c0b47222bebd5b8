package apiclient

import (
	"context"
	"strconv"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// Networks lists the caller's networks (admins: all).
func (c *Client) Networks(ctx context.Context) ([]engine.Network, error) {
	return list[engine.Network](ctx, c, "/networks")
}

// Network shows a network by number.
func (c *Client) Network(ctx context.Context, id int) (engine.Network, error) {
	return get[engine.Network](ctx, c, "/networks/"+strconv.Itoa(id))
}

// CreateNetwork creates an internal network: the /24 asked for, or the next free one.
func (c *Client) CreateNetwork(ctx context.Context, req engine.NetworkRequest) (engine.Network, error) {
	var n engine.Network
	err := c.do(ctx, "POST", "/networks", c.auth, req, &n)
	return n, err
}

// UpdateNetwork renames a network or changes its name servers.
func (c *Client) UpdateNetwork(ctx context.Context, id int, upd engine.NetworkUpdate) (engine.Network, error) {
	var n engine.Network
	err := c.do(ctx, "PATCH", "/networks/"+strconv.Itoa(id), c.auth, upd, &n)
	return n, err
}

// DeleteNetwork deletes a network that no connection uses.
func (c *Client) DeleteNetwork(ctx context.Context, id int) error {
	return c.do(ctx, "DELETE", "/networks/"+strconv.Itoa(id), c.auth, nil, nil)
}

// Connections lists the caller's connections (admins: all).
func (c *Client) Connections(ctx context.Context) ([]engine.Connection, error) {
	return list[engine.Connection](ctx, c, "/connections")
}

// Connection shows a connection by ID.
func (c *Client) Connection(ctx context.Context, id string) (engine.Connection, error) {
	return get[engine.Connection](ctx, c, "/connections/"+esc(id))
}

// CreateConnection creates an internal, external or mapping connection, attached to
// req.Server when it is set.
func (c *Client) CreateConnection(ctx context.Context, req engine.ConnectionRequest) (engine.Connection, error) {
	var conn engine.Connection
	err := c.do(ctx, "POST", "/connections", c.auth, req, &conn)
	return conn, err
}

// UpdateConnection renames a connection or changes a mapping's port list.
func (c *Client) UpdateConnection(ctx context.Context, id string, upd engine.ConnectionUpdate) (engine.Connection, error) {
	var conn engine.Connection
	err := c.do(ctx, "PATCH", "/connections/"+esc(id), c.auth, upd, &conn)
	return conn, err
}

// DeleteConnection deletes a connection, unplugging it from its server first.
func (c *Client) DeleteConnection(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/connections/"+esc(id), c.auth, nil, nil)
}

// AttachConnection attaches a connection to a server (by ID or name); a running
// server gets the NIC at once.
func (c *Client) AttachConnection(ctx context.Context, id, server string) (engine.Connection, error) {
	var conn engine.Connection
	err := c.do(ctx, "POST", "/connections/"+esc(id)+"/attach", c.auth, map[string]string{"server": server}, &conn)
	return conn, err
}

// DetachConnection detaches a connection from its server; it keeps its addresses.
func (c *Client) DetachConnection(ctx context.Context, id string) (engine.Connection, error) {
	var conn engine.Connection
	err := c.do(ctx, "POST", "/connections/"+esc(id)+"/detach", c.auth, nil, &conn)
	return conn, err
}
