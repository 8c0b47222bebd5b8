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
	list bool
	// body, when set, is the one content type the route takes instead of JSON; the
	// handler reads the body itself, with no size limit of its own.
	body   string
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
	{method: "PATCH", path: "/nodes/{id}", access: accessAdmin, op: "updateNode", summary: "Rename a node; the name stays over its reboots",
		request: engine.NodeUpdate{}, response: engine.Node{}, handle: (*server).updateNode},
	{method: "GET", path: "/nodes/{id}/network", access: accessAdmin, op: "getNodeNetwork", summary: "What a node must have of the networks (bridges, peers, mappings, DHCP leases), computed from the engine's state",
		response: engine.NodeNetwork{}, handle: (*server).getNodeNetwork},
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

	{method: "GET", path: "/engine/settings", access: accessUser, op: "getSettings", summary: "Show the engine's settings: placement policy, overcommit, backup pool, shutdown timeout",
		response: engine.Settings{}, handle: (*server).getSettings},
	{method: "PUT", path: "/engine/settings", access: accessAdmin, op: "putSettings", summary: "Change the engine's settings",
		request: engine.Settings{}, response: engine.Settings{}, handle: (*server).putSettings},
	{method: "GET", path: "/usage", access: accessUser, op: "getUsage", summary: "What your images and servers take",
		response: engine.Usage{}, handle: (*server).myUsage},
	{method: "GET", path: "/users/{id}/usage", access: accessUser, op: "getUserUsage", summary: "What a user's images and servers take (users see their own)",
		response: engine.Usage{}, handle: (*server).userUsage},

	{method: "GET", path: "/servers", access: accessUser, op: "listServers", summary: "List your servers (admins: all)",
		response: engine.Server{}, list: true, handle: (*server).listServers},
	{method: "POST", path: "/servers", access: accessUser, op: "createServer", summary: "Create a server from images or by cloning masters", status: http.StatusCreated,
		request: engine.ServerRequest{}, response: engine.Server{}, handle: (*server).createServer},
	{method: "GET", path: "/servers/{id}", access: accessUser, op: "getServer", summary: "Show a server by ID or name",
		response: engine.Server{}, handle: (*server).getServer},
	{method: "PATCH", path: "/servers/{id}", access: accessUser, op: "updateServer", summary: "Change a server's name, size, boot order, autostart or node lock",
		request: engine.ServerUpdate{}, response: engine.Server{}, handle: (*server).updateServer},
	{method: "DELETE", path: "/servers/{id}", access: accessUser, op: "deleteServer", summary: "Delete a shut-off server; ?disks=delete deletes its disk images too",
		response: deleteServerResponse{}, handle: (*server).deleteServer},
	{method: "POST", path: "/servers/{id}/start", access: accessUser, op: "startServer", summary: "Place a server on a node and start it",
		response: engine.Server{}, handle: (*server).startServer},
	{method: "POST", path: "/servers/{id}/shutdown", access: accessUser, op: "shutdownServer", summary: "Press the ACPI power button; the operation ends when the server is off or the timeout passes", status: http.StatusAccepted,
		request: shutdownRequest{}, response: engine.Operation{}, handle: (*server).shutdownServer},
	{method: "POST", path: "/servers/{id}/stop", access: accessUser, op: "stopServer", summary: "Force a server off",
		response: engine.Server{}, handle: (*server).stopServer},
	{method: "POST", path: "/servers/{id}/reboot", access: accessUser, op: "rebootServer", summary: "Ask a server to reboot (ACPI)",
		response: engine.Server{}, handle: (*server).rebootServer},
	{method: "POST", path: "/servers/{id}/suspend", access: accessUser, op: "suspendServer", summary: "Pause a running server in memory",
		response: engine.Server{}, handle: (*server).suspendServer},
	{method: "POST", path: "/servers/{id}/resume", access: accessUser, op: "resumeServer", summary: "Resume a suspended server",
		response: engine.Server{}, handle: (*server).resumeServer},
	{method: "POST", path: "/servers/{id}/migrate", access: accessUser, op: "migrateServer", summary: "Move a running server to another node without stopping it (disks on shared pools)", status: http.StatusAccepted,
		request: migrateRequest{}, response: engine.Operation{}, handle: (*server).migrateServer},
	{method: "POST", path: "/servers/{id}/disks", access: accessUser, op: "attachDisk", summary: "Attach an image as a disk (hot-plugged when running)",
		request: engine.ServerDiskRequest{}, response: engine.Server{}, handle: (*server).attachDisk},
	{method: "DELETE", path: "/servers/{id}/disks/{index}", access: accessUser, op: "detachDisk", summary: "Detach a disk by its index; the image stays",
		response: engine.Server{}, handle: (*server).detachDisk},
	{method: "PUT", path: "/servers/{id}/cdrom", access: accessUser, op: "insertCDROM", summary: "Put an ISO image into the CD-ROM drive",
		request: cdromRequest{}, response: engine.Server{}, handle: (*server).insertCDROM},
	{method: "DELETE", path: "/servers/{id}/cdrom", access: accessUser, op: "ejectCDROM", summary: "Eject the CD-ROM",
		response: engine.Server{}, handle: (*server).ejectCDROM},
	{method: "GET", path: "/servers/{id}/console/{kind}", access: accessUser, op: "serverConsole", summary: "The serial (kind serial) or graphical (kind vnc, RFB) console as a websocket; owner and admins only",
		handle: (*server).serverConsole},

	{method: "GET", path: "/networks", access: accessUser, op: "listNetworks", summary: "List your networks (admins: all)",
		response: engine.Network{}, list: true, handle: (*server).listNetworks},
	{method: "POST", path: "/networks", access: accessUser, op: "createNetwork", summary: "Create an internal network: a /24 inside 10.0.0.0/8, the one asked for or the next free one", status: http.StatusCreated,
		request: engine.NetworkRequest{}, response: engine.Network{}, handle: (*server).createNetwork},
	{method: "GET", path: "/networks/{id}", access: accessUser, op: "getNetwork", summary: "Show a network by number",
		response: engine.Network{}, handle: (*server).getNetwork},
	{method: "PATCH", path: "/networks/{id}", access: accessUser, op: "updateNetwork", summary: "Rename a network or change its name servers",
		request: engine.NetworkUpdate{}, response: engine.Network{}, handle: (*server).updateNetwork},
	{method: "DELETE", path: "/networks/{id}", access: accessUser, op: "deleteNetwork", summary: "Delete a network no connection uses; its bridges, gateway and rules go from every node",
		status: http.StatusNoContent, handle: (*server).deleteNetwork},

	{method: "GET", path: "/connections", access: accessUser, op: "listConnections", summary: "List your connections (admins: all)",
		response: engine.Connection{}, list: true, handle: (*server).listConnections},
	{method: "POST", path: "/connections", access: accessUser, op: "createConnection", summary: "Create an internal, external or mapping connection, optionally attached to a server", status: http.StatusCreated,
		request: engine.ConnectionRequest{}, response: engine.Connection{}, handle: (*server).createConnection},
	{method: "GET", path: "/connections/{id}", access: accessUser, op: "getConnection", summary: "Show a connection",
		response: engine.Connection{}, handle: (*server).getConnection},
	{method: "PATCH", path: "/connections/{id}", access: accessUser, op: "updateConnection", summary: "Rename a connection or change a mapping's port list",
		request: engine.ConnectionUpdate{}, response: engine.Connection{}, handle: (*server).updateConnection},
	{method: "DELETE", path: "/connections/{id}", access: accessUser, op: "deleteConnection", summary: "Delete a connection (unplugged from its server first); its addresses are free again",
		status: http.StatusNoContent, handle: (*server).deleteConnection},
	{method: "POST", path: "/connections/{id}/attach", access: accessUser, op: "attachConnection", summary: "Attach a connection to a server (hot-plugged when it runs)",
		request: attachRequest{}, response: engine.Connection{}, handle: (*server).attachConnection},
	{method: "POST", path: "/connections/{id}/detach", access: accessUser, op: "detachConnection", summary: "Detach a connection from its server (unplugged when it runs); it keeps its addresses",
		response: engine.Connection{}, handle: (*server).detachConnection},

	{method: "GET", path: "/images", access: accessUser, op: "listImages", summary: "List your images (admins: all)",
		response: engine.Image{}, list: true, handle: (*server).listImages},
	{method: "POST", path: "/images", access: accessUser, op: "createImage", summary: "Create an empty image, or start an upload (upload: true, size in bytes)", status: http.StatusCreated,
		request: engine.ImageRequest{}, response: engine.Image{}, handle: (*server).createImage},
	{method: "GET", path: "/images/{id}", access: accessUser, op: "getImage", summary: "Show an image by ID or name",
		response: engine.Image{}, handle: (*server).getImage},
	{method: "PATCH", path: "/images/{id}", access: accessUser, op: "updateImage", summary: "Rename an image, mark it master or not, set its backup schedule",
		request: engine.ImageUpdate{}, response: engine.Image{}, handle: (*server).updateImage},
	{method: "DELETE", path: "/images/{id}", access: accessUser, op: "deleteImage", summary: "Delete an image (not a master with children, not one a server uses)",
		status: http.StatusNoContent, handle: (*server).deleteImage},
	{method: "GET", path: "/images/{id}/info", access: accessUser, op: "imageInfo", summary: "qemu-img's view of an image: virtual and used size, backing chain",
		response: engine.ImageInfo{}, handle: (*server).imageInfo},
	{method: "GET", path: "/images/{id}/download", access: accessUser, op: "downloadImage", summary: "Download an image's file (Range requests resume)",
		handle: (*server).downloadImage},
	{method: "GET", path: "/images/{id}/upload", access: accessUser, op: "uploadStatus", summary: "Where an upload stands (upload.offset): resume from there",
		response: engine.Image{}, handle: (*server).uploadStatus},
	{method: "PATCH", path: "/images/{id}/upload", access: accessUser, op: "uploadChunk", summary: "Send the next bytes of an upload: Upload-Offset header, body " + uploadContentType,
		body: uploadContentType, response: engine.Image{}, handle: (*server).uploadChunk},
	{method: "POST", path: "/images/{id}/resize", access: accessUser, op: "resizeImage", summary: "Grow an image",
		request: resizeRequest{}, response: engine.Image{}, handle: (*server).resizeImage},
	{method: "POST", path: "/images/{id}/convert", access: accessUser, op: "convertImage", summary: "Convert an image into a new image of another format", status: http.StatusAccepted,
		request: convertRequest{}, response: engine.Operation{}, handle: (*server).convertImage},
	{method: "POST", path: "/images/{id}/clone", access: accessUser, op: "cloneImage", summary: "Clone a master into a linked qcow2 child (at once), or make a full copy (an operation)", status: http.StatusCreated,
		request: engine.CloneRequest{}, response: cloneResponse{}, handle: (*server).cloneImage},
	{method: "POST", path: "/images/{id}/flatten", access: accessUser, op: "flattenImage", summary: "Make a child independent of its master", status: http.StatusAccepted,
		response: engine.Operation{}, handle: (*server).flattenImage},
	{method: "POST", path: "/images/{id}/backup", access: accessUser, op: "backupImage", summary: "Back the image up into the backup pool", status: http.StatusAccepted,
		response: engine.Operation{}, handle: (*server).backupImage},

	{method: "GET", path: "/backups", access: accessUser, op: "listBackups", summary: "List your image backups (?image= filters)",
		response: engine.Backup{}, list: true, handle: (*server).listBackups},
	{method: "GET", path: "/backups/{id}", access: accessUser, op: "getBackup", summary: "Show a backup",
		response: engine.Backup{}, handle: (*server).getBackup},
	{method: "DELETE", path: "/backups/{id}", access: accessUser, op: "deleteBackup", summary: "Delete a backup",
		status: http.StatusNoContent, handle: (*server).deleteBackup},
	{method: "POST", path: "/backups/{id}/restore", access: accessUser, op: "restoreBackup", summary: "Restore a backup in place (servers off) or, with a name, as a new image", status: http.StatusAccepted,
		request: engine.RestoreRequest{}, response: engine.Operation{}, handle: (*server).restoreBackup},

	{method: "GET", path: "/pools", access: accessUser, op: "listPools", summary: "List the storage pools with their usage per user",
		response: engine.Pool{}, list: true, handle: (*server).listPools},
	{method: "POST", path: "/pools", access: accessAdmin, op: "createPool", summary: "Add a storage pool on a directory, or on a device it formats (confirm_format)", status: http.StatusCreated,
		request: engine.PoolRequest{}, response: engine.Pool{}, handle: (*server).createPool},
	{method: "GET", path: "/pools/{id}", access: accessUser, op: "getPool", summary: "Show a pool",
		response: engine.Pool{}, handle: (*server).getPool},
	{method: "PATCH", path: "/pools/{id}", access: accessAdmin, op: "updatePool", summary: "Change a pool's daily snapshot schedule",
		request: engine.PoolUpdate{}, response: engine.Pool{}, handle: (*server).updatePool},
	{method: "DELETE", path: "/pools/{id}", access: accessAdmin, op: "deletePool", summary: "Forget an empty pool (its data stays on the disk)",
		status: http.StatusNoContent, handle: (*server).deletePool},
	{method: "GET", path: "/pools/{id}/snapshots", access: accessUser, op: "listSnapshots", summary: "List a pool's snapshots",
		response: engine.PoolSnapshot{}, list: true, handle: (*server).listSnapshots},
	{method: "POST", path: "/pools/{id}/snapshots", access: accessAdmin, op: "createSnapshot", summary: "Snapshot a pool now", status: http.StatusCreated,
		response: engine.PoolSnapshot{}, handle: (*server).createSnapshot},
	{method: "DELETE", path: "/pools/{id}/snapshots/{name}", access: accessAdmin, op: "deleteSnapshot", summary: "Delete a pool snapshot",
		status: http.StatusNoContent, handle: (*server).deleteSnapshot},
	{method: "POST", path: "/pools/{id}/snapshots/{name}/restore", access: accessUser, op: "restoreFromSnapshot", summary: "Restore one image from a snapshot, in place or as a new image", status: http.StatusAccepted,
		request: engine.RestoreRequest{}, response: engine.Operation{}, handle: (*server).restoreFromSnapshot},
	{method: "POST", path: "/pools/{id}/snapshots/{name}/rollback", access: accessAdmin, op: "rollbackPool", summary: "Roll a whole pool back to a snapshot (confirm with the pool's name)",
		request: rollbackRequest{}, response: engine.Pool{}, handle: (*server).rollbackPool},

	{method: "GET", path: "/operations", access: accessUser, op: "listOperations", summary: "List your operations, newest first",
		response: engine.Operation{}, list: true, handle: (*server).listOperations},
	{method: "GET", path: "/operations/{id}", access: accessUser, op: "getOperation", summary: "Show an operation; ?wait=30s waits for its end",
		response: engine.Operation{}, handle: (*server).getOperation},
	{method: "POST", path: "/operations/{id}/cancel", access: accessUser, op: "cancelOperation", summary: "Cancel a running operation",
		response: engine.Operation{}, handle: (*server).cancelOperation},
}
