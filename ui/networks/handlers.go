// Package networks is the web console's Networks and Connections areas. The
// Networks page lists the internal networks (a private /24 each, with DHCP and a
// gateway on the admin) and the users' external segments, with the connections on
// each; it creates, renames and deletes networks and, for admins, sets the uplink's
// range of external addresses, the per-user quota and the default name servers. The
// Connections page lists the servers' network interfaces — internal, external (an
// uplink address) and mapping (an internal address behind an external one, limited
// to a port list) — creates them, attaches them to servers and detaches them, edits
// a mapping's port list and deletes them.
//
// Every form posts with the session's CSRF token and comes back to its page; when
// the engine refuses, the page shows the engine's message with the status
// layout.StatusOf gives it, and the create forms keep what was typed.
package networks

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/images"
	"github.com/cairn-os/cairn/ui/layout"
)

// Service is what the Networks and Connections areas need of the engine.
type Service interface {
	Networks(ctx context.Context, u engine.User) ([]engine.Network, error)
	CreateNetwork(ctx context.Context, u engine.User, req engine.NetworkRequest) (engine.Network, error)
	UpdateNetwork(ctx context.Context, u engine.User, id int, upd engine.NetworkUpdate) (engine.Network, error)
	DeleteNetwork(ctx context.Context, u engine.User, id int) error
	Connections(ctx context.Context, u engine.User) ([]engine.Connection, error)
	CreateConnection(ctx context.Context, u engine.User, req engine.ConnectionRequest) (engine.Connection, error)
	UpdateConnection(ctx context.Context, u engine.User, id string, upd engine.ConnectionUpdate) (engine.Connection, error)
	DeleteConnection(ctx context.Context, u engine.User, id string) error
	AttachConnection(ctx context.Context, u engine.User, id, serverID string) (engine.Connection, error)
	DetachConnection(ctx context.Context, u engine.User, id string) (engine.Connection, error)
	Servers(ctx context.Context, u engine.User) ([]engine.Server, error)
	Settings(ctx context.Context, u engine.User) (engine.Settings, error)
	UpdateSettings(ctx context.Context, u engine.User, st engine.Settings) (engine.Settings, error)
	UsageOf(ctx context.Context, u engine.User, userID string) (engine.Usage, error)
	layout.UserLister
}

var _ Service = (*engine.Engine)(nil)

// Handlers serve the Networks and Connections areas.
type Handlers struct {
	svc    Service
	logger *slog.Logger
}

// New returns the areas' handlers.
func New(svc Service, logger *slog.Logger) *Handlers {
	return &Handlers{svc: svc, logger: logger.With("area", "networks")}
}

// Routes are the areas' routes, as ui/routes.go declares them.
func (h *Handlers) Routes() []images.Route {
	return []images.Route{
		{Pattern: "GET /networks", Handler: h.Networks},
		{Pattern: "POST /networks", Handler: h.CreateNetwork},
		{Pattern: "POST /networks/settings", Handler: h.Settings},
		{Pattern: "POST /networks/{id}/update", Handler: h.UpdateNetwork},
		{Pattern: "POST /networks/{id}/delete", Handler: h.DeleteNetwork},
		{Pattern: "GET /connections", Handler: h.Connections},
		{Pattern: "POST /connections", Handler: h.CreateConnection},
		{Pattern: "POST /connections/{id}/attach", Handler: h.Attach},
		{Pattern: "POST /connections/{id}/detach", Handler: h.Detach},
		{Pattern: "POST /connections/{id}/ports", Handler: h.Ports},
		{Pattern: "POST /connections/{id}/rename", Handler: h.RenameConnection},
		{Pattern: "POST /connections/{id}/delete", Handler: h.DeleteConnection},
	}
}

// networkForm is what the create form holds, kept when the engine refuses it.
type networkForm struct {
	Name, Prefix, DNS string
	Error             string
}

// settingsForm is the admins' form for external addresses and name servers.
type settingsForm struct {
	Range, Quota, DNS string
	Error             string
}

func settingsFormOf(st engine.Settings) settingsForm {
	return settingsForm{Range: st.ExternalRange, Quota: strconv.Itoa(st.ExternalQuota), DNS: strings.Join(st.DNS, ", ")}
}

// networksView is what the Networks page shows.
type networksView struct {
	Viewer   layout.Viewer
	Networks []engine.Network
	// Conns are the connections on each network, by network number.
	Conns  map[int][]engine.Connection
	Owners map[string]string
	// DefaultDNS are the name servers of networks that name none.
	DefaultDNS []string
	Usage      *engine.Usage
	Form       networkForm
	// Settings is the admins' form; nil for others.
	Settings *settingsForm
	Done     string
	Alert    string
}

// Networks serves GET /networks.
func (h *Handlers) Networks(w http.ResponseWriter, r *http.Request) {
	h.networks(w, r, http.StatusOK, networkForm{}, nil, "")
}

// networks renders the Networks page with status; form is the create form, sf the
// settings form as typed (nil: the engine's settings), alert a refused action.
func (h *Handlers) networks(w http.ResponseWriter, r *http.Request, status int, form networkForm, sf *settingsForm, alert string) {
	ctx := r.Context()
	v, _ := layout.ViewerFrom(ctx)
	nets, err := h.svc.Networks(ctx, v.User)
	if err != nil {
		h.fail(w, r, "list networks", err)
		return
	}
	conns, err := h.svc.Connections(ctx, v.User)
	if err != nil {
		h.fail(w, r, "list connections", err)
		return
	}
	nv := networksView{Viewer: v, Networks: sortedNetworks(nets), Conns: map[int][]engine.Connection{},
		Owners: layout.UserNames(ctx, h.svc, v), Form: form, Alert: alert, Done: doneMessages[r.URL.Query().Get("done")]}
	for _, c := range sortedConnections(conns) {
		nv.Conns[c.Network] = append(nv.Conns[c.Network], c)
	}
	st, err := h.svc.Settings(ctx, v.User)
	if err != nil {
		h.logger.Warn("read settings", "user", v.User.Name, "err", err)
	} else {
		nv.DefaultDNS = st.DNS
		if images.IsAdmin(v) {
			if sf == nil {
				f := settingsFormOf(st)
				sf = &f
			}
			nv.Settings = sf
		}
	}
	nv.Usage = h.usage(ctx, v)
	layout.Render(w, r, h.logger, status, layout.Page{Title: "Networks", Section: "networks", Content: networksPage(nv)})
}

// usage is the viewer's own usage, or nil when it cannot be read.
func (h *Handlers) usage(ctx context.Context, v layout.Viewer) *engine.Usage {
	us, err := h.svc.UsageOf(ctx, v.User, "me")
	if err != nil {
		h.logger.Warn("read usage", "user", v.User.Name, "err", err)
		return nil
	}
	return &us
}

// CreateNetwork serves POST /networks: name, prefix (empty: the next free /24) and
// dns (comma- or space-separated, empty: the engine's).
func (h *Handlers) CreateNetwork(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	f, ok := h.parse(w, r)
	if !ok {
		return
	}
	form := networkForm{Name: strings.TrimSpace(f.Get("name")), Prefix: strings.TrimSpace(f.Get("prefix")), DNS: strings.TrimSpace(f.Get("dns"))}
	n, err := h.svc.CreateNetwork(r.Context(), v.User, engine.NetworkRequest{Name: form.Name, Prefix: form.Prefix, DNS: splitList(form.DNS)})
	if err != nil {
		var status int
		status, form.Error = images.Refuse(h.logger, r, "create network", err)
		h.networks(w, r, status, form, nil, "")
		return
	}
	h.logger.Info("network created", "network", n.ID, "prefix", n.Prefix, "user", v.User.Name)
	http.Redirect(w, r, images.WithQuery("/networks", "done", "created")+"#"+networkAnchor(n.ID), http.StatusSeeOther)
}

// UpdateNetwork serves POST /networks/{id}/update: name, and dns when the form has
// the field (internal networks; empty: the engine's).
func (h *Handlers) UpdateNetwork(w http.ResponseWriter, r *http.Request) {
	h.networkAction(w, r, "update network", func(ctx context.Context, u engine.User, id int, f url.Values) (string, error) {
		name := strings.TrimSpace(f.Get("name"))
		upd := engine.NetworkUpdate{Name: &name}
		if _, ok := f["dns"]; ok {
			dns := splitList(f.Get("dns"))
			upd.DNS = &dns
		}
		if _, err := h.svc.UpdateNetwork(ctx, u, id, upd); err != nil {
			return "", err
		}
		return images.WithQuery("/networks", "done", "updated") + "#" + networkAnchor(id), nil
	})
}

// DeleteNetwork serves POST /networks/{id}/delete; the form must carry confirm=yes.
// The engine refuses while connections are on the network, and says which.
func (h *Handlers) DeleteNetwork(w http.ResponseWriter, r *http.Request) {
	h.networkAction(w, r, "delete network", func(ctx context.Context, u engine.User, id int, f url.Values) (string, error) {
		if f.Get("confirm") != "yes" {
			return "", refusal("Tick the box to confirm that network " + strconv.Itoa(id) + " is to be deleted.")
		}
		if err := h.svc.DeleteNetwork(ctx, u, id); err != nil {
			return "", err
		}
		return images.WithQuery("/networks", "done", "deleted"), nil
	})
}

// Settings serves POST /networks/settings (admins): external_range, external_quota
// and dns, written into the engine's settings; the other settings stay as they are.
func (h *Handlers) Settings(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v, _ := layout.ViewerFrom(ctx)
	f, ok := h.parse(w, r)
	if !ok {
		return
	}
	sf := settingsForm{Range: strings.TrimSpace(f.Get("external_range")), Quota: strings.TrimSpace(f.Get("external_quota")),
		DNS: strings.TrimSpace(f.Get("dns"))}
	err := func() error {
		quota, err := strconv.Atoi(sf.Quota)
		if err != nil {
			return refusal("The quota is a whole number of external addresses per user, like 4.")
		}
		st, err := h.svc.Settings(ctx, v.User)
		if err != nil {
			return err
		}
		st.ExternalRange, st.ExternalQuota, st.DNS = sf.Range, quota, splitList(sf.DNS)
		_, err = h.svc.UpdateSettings(ctx, v.User, st)
		return err
	}()
	if err != nil {
		status, msg := images.Refuse(h.logger, r, "update settings", err)
		if !images.IsAdmin(v) {
			// No settings form to show it on.
			h.networks(w, r, status, networkForm{}, nil, msg)
			return
		}
		sf.Error = msg
		h.networks(w, r, status, networkForm{}, &sf, "")
		return
	}
	h.logger.Info("network settings changed", "external_range", sf.Range, "user", v.User.Name)
	http.Redirect(w, r, images.WithQuery("/networks", "done", "settings"), http.StatusSeeOther)
}

// Messages after an action went through, by the "done" query parameter.
var doneMessages = map[string]string{
	"created":  "The network was created.",
	"updated":  "The network was saved.",
	"deleted":  "The network was deleted.",
	"settings": "The settings were saved.",
}

// networkAction runs a form of one network: do returns where to go; a refusal shows
// the Networks page again with the engine's message.
func (h *Handlers) networkAction(w http.ResponseWriter, r *http.Request, op string, do func(ctx context.Context, u engine.User, id int, f url.Values) (string, error)) {
	v, _ := layout.ViewerFrom(r.Context())
	f, ok := h.parse(w, r)
	if !ok {
		return
	}
	next, err := func() (string, error) {
		id, err := engine.ParseNetworkID(r.PathValue("id"))
		if err != nil {
			return "", err
		}
		return do(r.Context(), v.User, id, f)
	}()
	if err != nil {
		status, msg := images.Refuse(h.logger, r, op, err)
		h.networks(w, r, status, networkForm{}, nil, msg)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handlers) parse(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		layout.Error(w, r, h.logger, http.StatusBadRequest, "The form could not be read. Reload the page and try again.")
		return nil, false
	}
	return r.PostForm, true
}

// fail answers an engine error that leaves nothing to show with an error page.
func (h *Handlers) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	status, msg := images.Refuse(h.logger, r, op, err)
	layout.Error(w, r, h.logger, status, msg)
}

// refusal is the console's refusal of a form before the engine is asked.
type refusal string

func (e refusal) Error() string { return string(e) }
func (e refusal) Unwrap() error { return engine.ErrInvalid }

// splitList splits a list typed with commas or spaces; nil when it is empty.
func splitList(s string) []string {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
	if len(fields) == 0 {
		return nil
	}
	return slices.Clip(fields)
}
