package server

import (
	"errors"
	"fmt"
	"io"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/notice"
)

// maxVerifyProblems is how many missing or older lines one VerifyNotices
// answer lists (the counts are always complete).
const maxVerifyProblems = 10000

// VerifyNotices compares wave outbox lines with the ledger, changing
// nothing. Problems name lines by their position in the stream and their
// notice id, never by subject id. The first invalid line ends the stream
// with its 1-based number.
func (s *noticeService) VerifyNotices(stream impactv1.NoticeService_VerifyNoticesServer) error {
	ctx := stream.Context()
	var out impactv1.VerifyNoticesResponse
	for line := uint32(1); ; line++ {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&out)
		}
		var invalid *invalidRequestError
		if errors.As(err, &invalid) {
			return fmt.Errorf("record %d: %w", line, err)
		}
		if err != nil {
			return err
		}
		res, pinned, err := s.notices.Verify(ctx, req.GetIncidentId(), req.GetSubjectId(), uint64(req.GetVersion()), req.GetNoticeId())
		if err != nil {
			return fmt.Errorf("record %d: %w", line, err)
		}
		var problem impactv1.VerifyOutcome
		switch res {
		case notice.VerifyOK:
			out.Ok++
		case notice.VerifyNewer:
			out.Newer++
		case notice.VerifyErased:
			out.Erased++
		case notice.VerifyMissing:
			out.Missing++
			problem = impactv1.VerifyOutcome_VERIFY_OUTCOME_MISSING
		case notice.VerifyOlder:
			out.Older++
			problem = impactv1.VerifyOutcome_VERIFY_OUTCOME_OLDER
		}
		if problem == impactv1.VerifyOutcome_VERIFY_OUTCOME_UNSPECIFIED {
			continue
		}
		if len(out.Problems) == maxVerifyProblems {
			out.Truncated = true
			continue
		}
		out.Problems = append(out.Problems, &impactv1.VerifyProblem{
			Index: line, NoticeId: req.GetNoticeId(), Outcome: problem, PinnedVersion: uint32(pinned),
		})
	}
}
