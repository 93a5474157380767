package main

import (
	"flag"

	"github.com/impact-health/impact/internal/app"
)

// addPracticeFlags declares the practice-facing API's flags.
func addPracticeFlags(fs *flag.FlagSet, c *app.Config) {
	fs.Var((*limitFlag)(&c.RatePracticeIDs), "rate-practice-ids", "rate limit of the subject ids each practice checks, RATE/UNIT[:BURST] (burst at least 10000, one full batch) or off")
}
