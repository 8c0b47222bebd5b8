package apiclient

import (
	"context"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// Health checks that the API answers.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, "GET", "/health", nil, nil, nil)
}

// CAPEM returns the CA certificate the engine serves, over the client's own TLS
// checks. To fetch it before trusting it, use FetchCA.
func (c *Client) CAPEM(ctx context.Context) ([]byte, error) {
	var data []byte
	err := c.do(ctx, "GET", "/engine/ca.pem", nil, nil, &data)
	return data, err
}

// Engine describes the engine.
func (c *Client) Engine(ctx context.Context) (engine.Info, error) {
	return get[engine.Info](ctx, c, "/engine")
}

// Nodes lists the nodes.
func (c *Client) Nodes(ctx context.Context) ([]engine.Node, error) {
	return list[engine.Node](ctx, c, "/nodes")
}

// Node shows one node.
func (c *Client) Node(ctx context.Context, id string) (engine.Node, error) {
	return get[engine.Node](ctx, c, "/nodes/"+esc(id))
}

// UpdateNode renames a node (admins).
func (c *Client) UpdateNode(ctx context.Context, id string, upd engine.NodeUpdate) (engine.Node, error) {
	var n engine.Node
	err := c.do(ctx, "PATCH", "/nodes/"+esc(id), c.auth, upd, &n)
	return n, err
}

// SetNodeMaintenance puts a node into maintenance or takes it out.
func (c *Client) SetNodeMaintenance(ctx context.Context, id string, on bool) (engine.Node, error) {
	action := "/ready"
	if on {
		action = "/maintenance"
	}
	var n engine.Node
	err := c.do(ctx, "POST", "/nodes/"+esc(id)+action, c.auth, nil, &n)
	return n, err
}

// Services lists the supervisor's services.
func (c *Client) Services(ctx context.Context) ([]engine.ServiceStatus, error) {
	return list[engine.ServiceStatus](ctx, c, "/services")
}

// Users lists the users (admins only).
func (c *Client) Users(ctx context.Context) ([]engine.User, error) {
	return list[engine.User](ctx, c, "/users")
}

// User shows a user by ID or name.
func (c *Client) User(ctx context.Context, id string) (engine.User, error) {
	return get[engine.User](ctx, c, "/users/"+esc(id))
}

// CreateUser makes a user (admins only).
func (c *Client) CreateUser(ctx context.Context, name, password string, role engine.Role) (engine.User, error) {
	var u engine.User
	err := c.do(ctx, "POST", "/users", c.auth, map[string]any{"name": name, "password": password, "role": role}, &u)
	return u, err
}

// DeleteUser deletes a user by ID or name (admins only).
func (c *Client) DeleteUser(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/users/"+esc(id), c.auth, nil, nil)
}

// Tokens lists the caller's API tokens.
func (c *Client) Tokens(ctx context.Context) ([]engine.Token, error) {
	return list[engine.Token](ctx, c, "/tokens")
}

// CreateToken makes an API token for the caller; its Secret is only in this answer.
func (c *Client) CreateToken(ctx context.Context, name string) (engine.Token, error) {
	var t engine.Token
	err := c.do(ctx, "POST", "/tokens", c.auth, map[string]string{"name": name}, &t)
	return t, err
}

// DeleteToken deletes one of the caller's API tokens.
func (c *Client) DeleteToken(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/tokens/"+esc(id), c.auth, nil, nil)
}

// Join joins a compute node with the join token.
func (c *Client) Join(ctx context.Context, joinToken string, req engine.JoinRequest) (engine.JoinResponse, error) {
	var resp engine.JoinResponse
	err := c.do(ctx, "POST", "/nodes/join", Bearer(joinToken), req, &resp)
	return resp, err
}

// Heartbeat sends a node's heartbeat; the client must have the node's certificate
// (WithCertificate). It returns the interval in seconds the engine asks for.
func (c *Client) Heartbeat(ctx context.Context, nodeID string, hb engine.Heartbeat) (int, error) {
	var resp struct {
		HeartbeatSeconds int `json:"heartbeat_seconds"`
	}
	err := c.do(ctx, "POST", "/nodes/"+esc(nodeID)+"/heartbeat", nil, hb, &resp)
	return resp.HeartbeatSeconds, err
}
