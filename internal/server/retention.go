package server

import (
	"context"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// GcSnapshots removes the versions no one can need any more (see
// snapshot.Service.GC); the caller is recorded as the actor.
func (s *snapshotService) GcSnapshots(ctx context.Context, req *impactv1.GcSnapshotsRequest) (*impactv1.GcSnapshotsResponse, error) {
	removed, kept, err := s.snapshots.GC(ctx, req.GetIncidentId(), int(req.GetKeepLast()), actor(ctx))
	if err != nil {
		return nil, err
	}
	return &impactv1.GcSnapshotsResponse{IncidentId: req.GetIncidentId(), Removed: versionsPB(removed), Kept: versionsPB(kept)}, nil
}

func versionsPB(vs []uint64) []uint32 {
	out := make([]uint32, len(vs))
	for i, v := range vs {
		out[i] = uint32(v)
	}
	return out
}
