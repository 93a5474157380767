package web_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/impact-health/impact/internal/testutil/browsertest"
)

// browser is one headless Chromium tab (browsertest.Tab) and what the
// pages wrote to its console.
type browser struct {
	ctx     context.Context
	mu      sync.Mutex
	console []string
	wg      sync.WaitGroup
	stop    context.CancelFunc
}

// newBrowser opens a tab whose actions time out after timeout; it is closed
// when the test ends.
func newBrowser(t *testing.T, timeout time.Duration) *browser {
	t.Helper()
	ctx, cancel := browsertest.Tab(t, browsertest.ChromiumPath(t), timeout)
	b := &browser{ctx: ctx, stop: cancel}
	messages := chromedp.Console(ctx)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, fmt.Sprintf("%s %s: %s", m.Type, m.Source, m.Text))
			b.mu.Unlock()
		}
	}()
	t.Cleanup(b.close)
	return b
}

func (b *browser) close() {
	b.stop()
	b.wg.Wait()
}

// checkConsole closes the tab and fails the test on a CSP violation or an
// uncaught exception in its console.
func (b *browser) checkConsole(t *testing.T) {
	t.Helper()
	b.close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		if strings.Contains(m, "Content Security Policy") || strings.HasPrefix(m, string(chromedp.ConsoleException)) {
			t.Errorf("browser console: %s", m)
		}
	}
}
