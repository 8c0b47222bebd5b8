package servers

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
	"github.com/cairn-os/cairn/ui/layout"
)

// Prefixes of a disk's source in the create form: an image used as it is, or a
// master cloned for the server.
const (
	sourceImage = "image:"
	sourceClone = "clone:"
)

// bootSlots is how many boot devices the form offers to order.
const bootSlots = 3

// createForm is what the create form holds, as typed: it goes back to the person
// unchanged when the engine refuses it.
type createForm struct {
	Name      string
	VCPUs     string
	MemoryMiB string
	NICs      string
	// Connections are the IDs of the connections ticked, attached as the first NICs.
	Connections []string
	Disks       [engine.MaxDisks]diskField
	CDROM       string
	Boot        [bootSlots]string
	Autostart   bool
	LockNode    string
	Start       bool
	// Error is the engine's answer to the last try.
	Error string
}

// diskField is one disk row of the create form.
type diskField struct {
	// Source is "" (no disk), "image:<id>" or "clone:<id>".
	Source string
	Bus    string
	// CloneNode is the node whose local storage gets a clone; "" for the master's pool.
	CloneNode string
}

// defaultForm is a new form: one vCPU, 1 GiB, one NIC, started when made.
func defaultForm() createForm {
	f := createForm{VCPUs: "1", MemoryMiB: "1024", NICs: "1", Start: true}
	for i := range f.Disks {
		f.Disks[i].Bus = engine.BusVirtio
	}
	return f
}

// readForm reads the create form of r.
func readForm(r *http.Request) createForm {
	f := createForm{
		Name:      strings.TrimSpace(r.PostFormValue("name")),
		VCPUs:     strings.TrimSpace(r.PostFormValue("vcpus")),
		MemoryMiB: strings.TrimSpace(r.PostFormValue("memory_mib")),
		NICs:      strings.TrimSpace(r.PostFormValue("nics")),
		CDROM:     r.PostFormValue("cdrom"),
		Autostart: r.PostFormValue("autostart") == "on",
		LockNode:  r.PostFormValue("lock_node"),
		Start:     r.PostFormValue("start") == "on",
	}
	f.Connections = r.PostForm["connection"]
	for i := range f.Disks {
		n := strconv.Itoa(i)
		f.Disks[i] = diskField{
			Source:    r.PostFormValue("disk" + n + "_source"),
			Bus:       r.PostFormValue("disk" + n + "_bus"),
			CloneNode: r.PostFormValue("disk" + n + "_node"),
		}
	}
	for i := range f.Boot {
		f.Boot[i] = r.PostFormValue("boot" + strconv.Itoa(i))
	}
	return f
}

// request is the engine's request for f. A number that does not parse is sent as
// -1, so that the engine's message says what the field takes.
func (f createForm) request() engine.ServerRequest {
	req := engine.ServerRequest{
		Name:        f.Name,
		VCPUs:       number(f.VCPUs),
		MemoryMiB:   number(f.MemoryMiB),
		NICs:        number(f.NICs),
		CDROM:       f.CDROM,
		Autostart:   f.Autostart,
		LockNode:    f.LockNode,
		Start:       f.Start,
		Connections: f.Connections,
	}
	for _, d := range f.Disks {
		switch {
		case strings.HasPrefix(d.Source, sourceImage):
			req.Disks = append(req.Disks, engine.ServerDiskRequest{Image: strings.TrimPrefix(d.Source, sourceImage), Bus: d.Bus})
		case strings.HasPrefix(d.Source, sourceClone):
			req.Disks = append(req.Disks, engine.ServerDiskRequest{Image: strings.TrimPrefix(d.Source, sourceClone), Bus: d.Bus, Clone: true, CloneNode: d.CloneNode})
		}
	}
	for _, b := range f.Boot {
		if b != "" {
			req.Boot = append(req.Boot, b)
		}
	}
	return req
}

func number(s string) int {
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// NewForm serves GET /servers/new: the create form.
func (h *Handlers) NewForm(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	if v.User.Role == engine.RoleReadonly {
		layout.Error(w, r, h.logger, http.StatusForbidden,
			"Your account is read-only: it can look at servers but not create them. Ask an administrator.")
		return
	}
	h.renderForm(w, r, http.StatusOK, defaultForm())
}

// Create serves POST /servers: make the server and go to its page; when the engine
// refuses, the form again with everything as typed and the engine's message.
func (h *Handlers) Create(w http.ResponseWriter, r *http.Request) {
	v, _ := layout.ViewerFrom(r.Context())
	f := readForm(r)
	s, err := h.svc.CreateServer(r.Context(), v.User, f.request())
	switch {
	case err == nil:
		http.Redirect(w, r, Path(s.ID), http.StatusSeeOther)
	case s.ID != "":
		// Made, but it did not start: its page says why.
		status, msg := layout.StatusOf(err), err.Error()
		if status == http.StatusInternalServerError {
			h.logger.Error("start new server", "server", s.ID, "err", err)
			msg = "Server " + s.Name + " was created but did not start. The engine's log says what failed."
		}
		h.renderDetail(w, r, status, s, "", msg)
	default:
		status := layout.StatusOf(err)
		f.Error = err.Error()
		if status == http.StatusInternalServerError {
			h.logger.Error("create server", "name", f.Name, "err", err)
			f.Error = "The engine could not create the server. The engine's log says what failed."
		}
		h.renderForm(w, r, status, f)
	}
}

func (h *Handlers) renderForm(w http.ResponseWriter, r *http.Request, status int, f createForm) {
	c := h.formChoices(r.Context())
	layout.Render(w, r, h.logger, status, layout.Page{
		Title:   "New server",
		Section: "servers",
		Content: createPage(f, c),
	})
}

// formChoices are the images and nodes the form offers.
type formChoices struct {
	images  []engine.Image // ready disks that no server uses
	masters []engine.Image // ready masters, to clone
	isos    []engine.Image
	nodes   []engine.Node
	// conns are the viewer's connections attached to no server.
	conns []engine.Connection
	// problem says what could not be read, so that a person knows why a list is empty.
	problem string
}

func (h *Handlers) formChoices(ctx context.Context) formChoices {
	v, _ := layout.ViewerFrom(ctx)
	var c formChoices
	images, err := h.svc.Images(ctx, v.User)
	if err != nil {
		h.logger.Warn("list images for the create form", "err", err)
		c.problem = "The engine could not list your images, so the form offers none. Reload in a moment."
	}
	for _, im := range sortedImages(images) {
		switch {
		case im.State != engine.ImageReady:
		case isISO(im):
			c.isos = append(c.isos, im)
		case im.Master:
			c.masters = append(c.masters, im)
		case len(im.UsedBy) == 0:
			c.images = append(c.images, im)
		}
	}
	nodes, err := h.svc.Nodes(ctx, v.User)
	if err != nil {
		h.logger.Warn("list nodes for the create form", "err", err)
	}
	c.nodes = sortedNodes(nodes)
	conns, err := h.svc.Connections(ctx, v.User)
	if err != nil {
		h.logger.Warn("list connections for the create form", "err", err)
	}
	for _, cn := range conns {
		if cn.Server == "" && cn.Owner == v.User.ID {
			c.conns = append(c.conns, cn)
		}
	}
	slices.SortFunc(c.conns, func(a, b engine.Connection) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	return c
}
