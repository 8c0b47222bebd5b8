package api

import (
	"net/http"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// access is who may call a route.
type access int

// The access levels of routes.
const (
	// accessPublic routes answer anyone.
	accessPublic access = iota
	// accessJoinToken routes need "Authorization: Bearer <join token>"; the engine
	// checks the token.
	accessJoinToken
	// accessNodeCert routes need the client certificate of the node named by {id}.
	accessNodeCert
	// accessUser routes need a user (Basic or API token); readonly users only GET.
	accessUser
	// accessAdmin routes need an admin.
	accessAdmin
	// accessOwn routes manage the caller's own credentials (API tokens): any user,
	// readonly ones too, or a readonly user could never use the CLI.
	accessOwn
)

func (a access) String() string {
	return [...]string{"public", "join-token", "node-certificate", "user", "admin", "own"}[a]
}

// route is one line of the route table.
type route struct {
	method string
	// path is below /api/v1, in net/http.ServeMux pattern syntax.
	path   string
	access access
	// op and summary name the operation in the OpenAPI document.
	op, summary string
	// status is the status of success: 200 when 0.
	status int
	// request is a value of the JSON body's type; nil when the route takes none.
	request any
	// response is a value of the answer's type (of one item when list is set);
	// nil when the route answers 204.
	response any
	// list wraps the handler's slice as {"items": [...]}.
	list   bool
	handle func(s *server, r *http.Request, c caller) (any, error)
}

// routes is THE route table of /api/v1: the mux, the authentication and the
// OpenAPI document are all made from it.
var routes = []route{
	{method: "GET", path: "/health", access: accessPublic, op: "health", summary: "Report that the API answers",
		response: healthResponse{}, handle: (*server).health},
	{method: "GET", path: "/openapi.json", access: accessPublic, op: "openapi", summary: "This OpenAPI document",
		response: map[string]any{}, handle: (*server).openapi},
	{method: "GET", path: "/engine/ca.pem", access: accessPublic, op: "getCA", summary: "The engine's CA certificate (PEM), to pin after checking its fingerprint",
		response: pemFile{}, handle: (*server).caPEM},
	{method: "GET", path: "/engine", access: accessUser, op: "getEngine", summary: "Describe the engine: name, URL, CA fingerprint, node totals",
		response: engine.Info{}, handle: (*server).engineInfo},

	{method: "GET", path: "/nodes", access: accessUser, op: "listNodes", summary: "List the nodes",
		response: engine.Node{}, list: true, handle: (*server).listNodes},
	{method: "GET", path: "/nodes/{id}", access: accessUser, op: "getNode", summary: "Show a node",
		response: engine.Node{}, handle: (*server).getNode},
	{method: "POST", path: "/nodes/{id}/maintenance", access: accessAdmin, op: "setNodeMaintenance", summary: "Put a node into maintenance",
		response: engine.Node{}, handle: (*server).nodeMaintenance},
	{method: "POST", path: "/nodes/{id}/ready", access: accessAdmin, op: "setNodeReady", summary: "Take a node out of maintenance",
		response: engine.Node{}, handle: (*server).nodeReady},
	{method: "POST", path: "/nodes/join", access: accessJoinToken, op: "joinNode", summary: "Join a compute node: record it and sign its certificate",
		request: engine.JoinRequest{}, response: engine.JoinResponse{}, handle: (*server).join},
	{method: "POST", path: "/nodes/{id}/heartbeat", access: accessNodeCert, op: "nodeHeartbeat", summary: "A node's heartbeat, over mutual TLS with its certificate",
		request: engine.Heartbeat{}, response: heartbeatResponse{}, handle: (*server).heartbeat},

	{method: "GET", path: "/services", access: accessUser, op: "listServices", summary: "List the supervisor's services",
		response: engine.ServiceStatus{}, list: true, handle: (*server).listServices},

	{method: "GET", path: "/users", access: accessAdmin, op: "listUsers", summary: "List the users",
		response: engine.User{}, list: true, handle: (*server).listUsers},
	{method: "POST", path: "/users", access: accessAdmin, op: "createUser", summary: "Create a user", status: http.StatusCreated,
		request: createUserRequest{}, response: engine.User{}, handle: (*server).createUser},
	{method: "GET", path: "/users/{id}", access: accessUser, op: "getUser", summary: "Show a user by ID or name (users may see themselves)",
		response: engine.User{}, handle: (*server).getUser},
	{method: "DELETE", path: "/users/{id}", access: accessAdmin, op: "deleteUser", summary: "Delete a user with their tokens and sessions",
		status: http.StatusNoContent, handle: (*server).deleteUser},

	{method: "GET", path: "/tokens", access: accessOwn, op: "listTokens", summary: "List your API tokens",
		response: engine.Token{}, list: true, handle: (*server).listTokens},
	{method: "POST", path: "/tokens", access: accessOwn, op: "createToken", summary: "Create an API token; the secret is in this answer only", status: http.StatusCreated,
		request: createTokenRequest{}, response: engine.Token{}, handle: (*server).createToken},
	{method: "DELETE", path: "/tokens/{id}", access: accessOwn, op: "deleteToken", summary: "Delete one of your API tokens",
		status: http.StatusNoContent, handle: (*server).deleteToken},
}
