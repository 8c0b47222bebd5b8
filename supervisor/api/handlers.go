package api

import (
	"net"
	"net/http"

	"github.com/cairn-os/cairn/supervisor/engine"
)

type healthResponse struct {
	Status string `json:"status"`
}

type heartbeatResponse struct {
	HeartbeatSeconds int `json:"heartbeat_seconds"`
}

type createUserRequest struct {
	Name     string      `json:"name"`
	Password string      `json:"password"`
	Role     engine.Role `json:"role"`
}

type createTokenRequest struct {
	Name string `json:"name"`
}

// pemFile is an answer that is a PEM file rather than JSON.
type pemFile []byte

func (s *server) health(r *http.Request, c caller) (any, error) {
	return healthResponse{Status: "ok"}, nil
}

func (s *server) openapi(r *http.Request, c caller) (any, error) {
	return rawJSON(s.openAPIDoc), nil
}

func (s *server) caPEM(r *http.Request, c caller) (any, error) {
	return pemFile(s.e.CA().CertPEM()), nil
}

func (s *server) engineInfo(r *http.Request, c caller) (any, error) {
	return s.e.Info(r.Context(), c.user)
}

func (s *server) listNodes(r *http.Request, c caller) (any, error) {
	return s.e.Nodes(r.Context(), c.user)
}

func (s *server) getNode(r *http.Request, c caller) (any, error) {
	return s.e.Node(r.Context(), c.user, r.PathValue("id"))
}

func (s *server) updateNode(r *http.Request, c caller) (any, error) {
	var upd engine.NodeUpdate
	if err := decodeJSON(r, &upd); err != nil {
		return nil, err
	}
	return s.e.UpdateNode(r.Context(), c.user, r.PathValue("id"), upd)
}

func (s *server) nodeMaintenance(r *http.Request, c caller) (any, error) {
	return s.e.SetNodeMaintenance(r.Context(), c.user, r.PathValue("id"), true)
}

func (s *server) nodeReady(r *http.Request, c caller) (any, error) {
	return s.e.SetNodeMaintenance(r.Context(), c.user, r.PathValue("id"), false)
}

func (s *server) join(r *http.Request, c caller) (any, error) {
	var req engine.JoinRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Address == "" {
		// The address the node reached us from is the one we can reach it at.
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			req.Address = host
		}
	}
	return s.e.Join(r.Context(), c.joinToken, req)
}

func (s *server) heartbeat(r *http.Request, c caller) (any, error) {
	var hb engine.Heartbeat
	if err := decodeJSON(r, &hb); err != nil {
		return nil, err
	}
	secs, err := s.e.Heartbeat(r.Context(), c.node, hb)
	if err != nil {
		return nil, err
	}
	return heartbeatResponse{HeartbeatSeconds: secs}, nil
}

func (s *server) listServices(r *http.Request, c caller) (any, error) {
	return s.e.Services(r.Context(), c.user)
}

func (s *server) listUsers(r *http.Request, c caller) (any, error) {
	return s.e.Users(r.Context(), c.user)
}

func (s *server) createUser(r *http.Request, c caller) (any, error) {
	var req createUserRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.CreateUser(r.Context(), c.user, req.Name, req.Password, req.Role)
}

func (s *server) getUser(r *http.Request, c caller) (any, error) {
	return s.e.User(r.Context(), c.user, r.PathValue("id"))
}

func (s *server) deleteUser(r *http.Request, c caller) (any, error) {
	return nil, s.e.DeleteUser(r.Context(), c.user, r.PathValue("id"))
}

func (s *server) listTokens(r *http.Request, c caller) (any, error) {
	return s.e.Tokens(r.Context(), c.user)
}

func (s *server) createToken(r *http.Request, c caller) (any, error) {
	var req createTokenRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.e.CreateToken(r.Context(), c.user, req.Name)
}

func (s *server) deleteToken(r *http.Request, c caller) (any, error) {
	return nil, s.e.DeleteToken(r.Context(), c.user, r.PathValue("id"))
}
