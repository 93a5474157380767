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
	var sub, practice string
	var scopes []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token --sub S [--scope impact.admin --scope impact.notify] [--practice PR001] [--ttl 1h]",
		Short: "Mint a token signed by the dev key of impactd --dev (in --data-dir)",
		Long: `Token prints a JWT signed with the local dev key that impactd --dev trusts,
kept under --data-dir (IMPACT_DATA_DIR, default ./.impact-dev; created if
missing). Without --scope it is a patient token for subject S; ops commands
need impact.admin (snapshots) or impact.notify (notices). --practice P makes
a practice token (the practice_id claim P, with the impact.practice scope)
for the practice API and the /practice/ page.

  export IMPACT_TOKEN=$(impactctl dev token --sub ops --scope impact.admin --scope impact.notify)`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			mint := auth.MintDevToken
			if practice != "" {
				mint = func(dir, sub string, scopes []string, ttl time.Duration) (string, error) {
					return auth.MintDevPracticeToken(dir, sub, practice, scopes, ttl)
				}
			}
			tok, err := mint(a.dataDir, sub, scopes, ttl)
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
	f.StringVar(&practice, "practice", "", "a practice token for this practice id (adds the impact.practice scope)")
	markRequired(cmd, "sub")
	cmd.RegisterFlagCompletionFunc("scope", cobra.FixedCompletions([]string{auth.ScopeAdmin, auth.ScopeNotify, auth.ScopePractice}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}
