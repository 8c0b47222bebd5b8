package qemutests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium, which `make deps` installs.
const chromiumPath = "/usr/bin/chromium"

// browser starts headless Chromium for one test. It ignores certificate errors only
// because the console's certificate comes from the engine's own CA, which the browser
// cannot know; the API client in the same test pins that CA.
func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Skipf("needs %s (`make deps` installs chromium)", chromiumPath)
	}
	// Not t.TempDir: Chromium's helper processes may still write to the profile for a
	// moment after the browser is gone, and t.TempDir fails the test when it cannot
	// remove it at once.
	profile, err := os.MkdirTemp("", "cairn-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		for i := 0; i < 50; i++ {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("left the browser profile %s behind", profile)
	})
	// Start the browser now, on the test's context: chromedp ties the browser's life
	// to the context of the first Run, and later Runs have short time-outs.
	if err := chromedp.Run(bctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return bctx
}

// screenshot saves what the browser shows to path as PNG.
func screenshot(ctx context.Context, path string) error {
	var png []byte
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(sctx, chromedp.CaptureScreenshot(&png)); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return os.WriteFile(path, png, 0o644)
}

// consoleNodeState logs in to the web console at base as a person would (the form
// id="login" with inputs "username" and "password"), opens /nodes, waits for the row
// of node id in table#nodes and returns its data-state. It saves a screenshot to shot
// either way, so that a failure shows what the browser saw.
func consoleNodeState(bctx context.Context, base, user, password, id, shot string) (string, error) {
	location := func() string {
		var loc string
		lctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		chromedp.Run(lctx, chromedp.Location(&loc))
		return loc
	}
	fail := func(format string, args ...any) (string, error) {
		if err := screenshot(bctx, shot); err != nil {
			return "", fmt.Errorf("%s (and %v)", fmt.Sprintf(format, args...), err)
		}
		return "", fmt.Errorf("%s; browser at %s, screenshot %s", fmt.Sprintf(format, args...), location(), shot)
	}
	ctx, cancel := context.WithTimeout(bctx, time.Minute)
	defer cancel()
	err := chromedp.Run(ctx,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(`form#login`, chromedp.ByQuery),
		chromedp.SendKeys(`form#login input[name="username"]`, user, chromedp.ByQuery),
		chromedp.SendKeys(`form#login input[name="password"]`, password, chromedp.ByQuery),
		chromedp.Submit(`form#login`, chromedp.ByQuery),
		// The login is done when the browser has left the form; a refused one
		// shows the form again.
		chromedp.WaitNotPresent(`form#login`, chromedp.ByQuery),
	)
	if err != nil {
		return fail("web console: logging in as %s: %v", user, err)
	}
	row := fmt.Sprintf(`table#nodes tr[data-node-id=%q]`, id)
	var state string
	var ok bool
	ctx, cancel = context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	err = chromedp.Run(ctx,
		chromedp.Navigate(base+"/nodes"),
		chromedp.WaitVisible(row, chromedp.ByQuery),
		chromedp.AttributeValue(row, "data-state", &state, &ok, chromedp.ByQuery),
	)
	if err != nil {
		return fail("web console: finding %s on the nodes page: %v", row, err)
	}
	return state, screenshot(bctx, shot)
}
