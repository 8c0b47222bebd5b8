package api

import (
	"net/http"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// Networks and connections.

// attachRequest names the server a connection is attached to.
type attachRequest struct {
	Server string `json:"server"`
}

func networkID(r *http.Request) (int, error) { return engine.ParseNetworkID(r.PathValue("id")) }

func (s *server) listNetworks(r *http.Request, c caller) (any, error) {
	return s.e.Networks(r.Context(), c.user)
}

func (s *server) createNetwork(r *http.Request, c caller) (any, error) {
	var req engine.NetworkRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.CreateNetwork(r.Context(), c.user, req)
}

func (s *server) getNetwork(r *http.Request, c caller) (any, error) {
	id, err := networkID(r)
	if err != nil {
		return nil, err
	}
	return s.e.Network(r.Context(), c.user, id)
}

func (s *server) updateNetwork(r *http.Request, c caller) (any, error) {
	id, err := networkID(r)
	if err != nil {
		return nil, err
	}
	var upd engine.NetworkUpdate
	if err := decodeJSON(r, &upd); err != nil {
		return nil, err
	}
	return s.e.UpdateNetwork(r.Context(), c.user, id, upd)
}

func (s *server) deleteNetwork(r *http.Request, c caller) (any, error) {
	id, err := networkID(r)
	if err != nil {
		return nil, err
	}
	return nil, s.e.DeleteNetwork(r.Context(), c.user, id)
}

func (s *server) listConnections(r *http.Request, c caller) (any, error) {
	return s.e.Connections(r.Context(), c.user)
}

func (s *server) createConnection(r *http.Request, c caller) (any, error) {
	var req engine.ConnectionRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.CreateConnection(r.Context(), c.user, req)
}

func (s *server) getConnection(r *http.Request, c caller) (any, error) {
	return s.e.Connection(r.Context(), c.user, id(r))
}

func (s *server) updateConnection(r *http.Request, c caller) (any, error) {
	var upd engine.ConnectionUpdate
	if err := decodeJSON(r, &upd); err != nil {
		return nil, err
	}
	return s.e.UpdateConnection(r.Context(), c.user, id(r), upd)
}

func (s *server) deleteConnection(r *http.Request, c caller) (any, error) {
	return nil, s.e.DeleteConnection(r.Context(), c.user, id(r))
}

func (s *server) attachConnection(r *http.Request, c caller) (any, error) {
	var req attachRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.AttachConnection(r.Context(), c.user, id(r), req.Server)
}

func (s *server) detachConnection(r *http.Request, c caller) (any, error) {
	return s.e.DetachConnection(r.Context(), c.user, id(r))
}

func (s *server) getNodeNetwork(r *http.Request, c caller) (any, error) {
	return s.e.NodeNetworkOf(r.Context(), c.user, id(r))
}
