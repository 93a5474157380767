package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/impact-health/impact/internal/auth"
)

func (a *app) devCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Local development helpers (impactd --dev)",
	}
	cmd.AddCommand(a.tokenCommand())
	return cmd
}

func (a *app) tokenCommand() *cobra.Command {
	var sub string
	var scopes []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token --sub S [--scope impact.admin --scope impact.notify] [--ttl 1h]",
		Short: "Mint a token signed by the dev key of impactd --dev (in --data-dir)",
		Long: `Token prints a JWT signed with the local dev key that impactd --dev trusts,
kept under --data-dir (IMPACT_DATA_DIR, default ./.impact-dev; created if
missing). Without --scope it is a patient token for subject S; ops commands
need impact.admin (snapshots) or impact.notify (notices).

  export IMPACT_TOKEN=$(impactctl dev token --sub ops --scope impact.admin --scope impact.notify)`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			tok, err := auth.MintDevToken(a.dataDir, sub, scopes, ttl)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return json.NewEncoder(a.stdout).Encode(map[string]string{"token": tok})
			}
			_, err = fmt.Fprintln(a.stdout, tok)
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&sub, "sub", "", "the token's subject: a patient's subject id, or an operator's name (required)")
	f.StringArrayVar(&scopes, "scope", nil, "a scope to grant, repeatable: impact.admin, impact.notify")
	f.DurationVar(&ttl, "ttl", time.Hour, "lifetime of the token")
	markRequired(cmd, "sub")
	cmd.RegisterFlagCompletionFunc("scope", cobra.FixedCompletions([]string{auth.ScopeAdmin, auth.ScopeNotify}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}
