package main

import (
	"io"
	"testing"
)

func TestWebDefault(t *testing.T) {
	prod := []string{"--jwks-file", "jwks.json", "--issuer", "i", "--audience", "a", "--pepper-file", "pepper"}
	for _, tc := range []struct {
		name string
		args []string
		env  string // IMPACT_WEB, "" for unset
		want bool
	}{
		{"off by default", prod, "", false},
		{"on with --dev", []string{"--dev"}, "", true},
		{"--web", append([]string{"--web"}, prod...), "", true},
		{"--dev --web=false", []string{"--dev", "--web=false"}, "", false},
		{"IMPACT_WEB=true", prod, "true", true},
		{"--dev and IMPACT_WEB=false", []string{"--dev"}, "false", false},
		{"the flag wins over the environment", []string{"--dev", "--web=true"}, "false", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("IMPACT_WEB", tc.env)
			}
			c, err := parseConfig(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.Web != tc.want {
				t.Fatalf("Web = %v, want %v", c.Web, tc.want)
			}
			if got := c.WebPage() != nil; got != tc.want {
				t.Fatalf("web page served = %v, want %v", got, tc.want)
			}
		})
	}
}
