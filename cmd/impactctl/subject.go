package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

func (a *app) subjectCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "subject",
		Short: "Act on one patient account: account closure (impact.admin)",
	}
	cmd.AddCommand(a.eraseCommand())
	return cmd
}

func (a *app) eraseCommand() *cobra.Command {
	var subject string
	cmd := &cobra.Command{
		Use:   "erase --subject S",
		Short: "Close a subject's account: remove its pins, drop it from later snapshots",
		Long: `Erase closes a patient's account: impactd removes the subject's notification
pins in every incident and records a tombstone under the subject's key (an
HMAC; the id itself is kept nowhere). From then on the subject's status
reads answer NOT_FOUND, notice claims answer NONE, and later snapshot
uploads drop the subject's rows. Versions already loaded keep their records
until 'snapshot gc' removes them. Erasing twice is harmless.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return callAndRender(a, cmd, impactv1.NewSubjectServiceClient,
				func(ctx context.Context, c impactv1.SubjectServiceClient) (*impactv1.EraseSubjectResponse, error) {
					return c.EraseSubject(ctx, &impactv1.EraseSubjectRequest{SubjectId: subject})
				},
				func(resp *impactv1.EraseSubjectResponse) error {
					_, err := fmt.Fprintf(a.stdout, "account closed: %d notification pins removed; later snapshots drop the subject\n", resp.GetPinsRemoved())
					return err
				})
		}),
	}
	cmd.Flags().StringVar(&subject, "subject", "", "the subject_id of the closed account (required)")
	markRequired(cmd, "subject")
	return cmd
}
