package main

import (
	"flag"
	"net/http"

	"github.com/impact-health/impact/internal/web"
)

// resolveWeb applies the default of --web: on with --dev, off otherwise,
// unless --web or IMPACT_WEB was given explicitly.
func resolveWeb(fs *flag.FlagSet, c *config, lookup func(string) (string, bool)) {
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "web" })
	if _, ok := lookup("IMPACT_WEB"); ok {
		explicit = true
	}
	if !explicit {
		c.Web = c.Dev
	}
}

// webPage is the patient web page served at "/" of the patient REST
// listener, or nil when --web is off.
func webPage(c *config) http.Handler {
	if !c.Web {
		return nil
	}
	return web.Handler(web.Options{Dev: c.Dev})
}
