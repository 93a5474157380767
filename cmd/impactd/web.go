package main

import (
	"flag"

	"github.com/impact-health/impact/internal/app"
)

// resolveWeb applies the default of --web: on with --dev, off otherwise,
// unless --web or IMPACT_WEB was given explicitly.
func resolveWeb(fs *flag.FlagSet, c *app.Config, lookup func(string) (string, bool)) {
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "web" })
	if _, ok := lookup("IMPACT_WEB"); ok {
		explicit = true
	}
	if !explicit {
		c.Web = c.Dev
	}
}
