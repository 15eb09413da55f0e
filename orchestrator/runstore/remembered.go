package runstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/sluicehq/sluice/orchestrator/approval"
)

// GetRemembered returns a remembered answer and its revision.
func (s *Store) GetRemembered(ctx context.Context, id string) (*approval.Remembered, uint64, error) {
	return get[approval.Remembered](ctx, s.remembered, id, "remembered answer")
}

// CreateRemembered stores a new remembered answer.
func (s *Store) CreateRemembered(ctx context.Context, r *approval.Remembered) error {
	return s.create(ctx, s.remembered, r.ID, r, "remembered answer "+r.ID)
}

// UpdateRemembered writes r only if the stored one is still at revision
// rev: two uses cannot both count against the same remainder of a cap.
func (s *Store) UpdateRemembered(ctx context.Context, r *approval.Remembered, rev uint64) error {
	return s.update(ctx, s.remembered, r.ID, r, rev)
}

// AllRemembered lists every remembered answer, revoked and expired ones
// included.
func (s *Store) AllRemembered(ctx context.Context) ([]approval.Remembered, error) {
	return all[approval.Remembered](ctx, s.remembered)
}

// Remembered is AllRemembered for a held call, which asks for them each
// time: the bucket is read again only when it changed since the last
// read (one request for its last sequence), not with a watch each time.
// A remembered answer changes only when a person remembers or revokes one,
// or one is used.
func (s *Store) Remembered(ctx context.Context) ([]approval.Remembered, error) {
	last, _, err := bucketState(ctx, s.remembered)
	if err != nil {
		return nil, fmt.Errorf("read the remembered answers' last write: %w", err)
	}
	// Never read yet, the list is empty at sequence 0, as an empty bucket
	// is: a bucket's last sequence never goes back to 0 once written.
	s.remMu.Lock()
	if s.rem.last == last {
		out := slices.Clone(s.rem.all)
		s.remMu.Unlock()
		return out, nil
	}
	s.remMu.Unlock()
	all, err := s.AllRemembered(ctx)
	if err != nil {
		return nil, err
	}
	// Read after last: as new as last or newer, never older.
	s.remMu.Lock()
	s.rem.all, s.rem.last = all, last
	s.remMu.Unlock()
	return slices.Clone(all), nil
}

// EndorsementKey is the EndorsedBucket key of an endorsement: its run's
// id, then its own.
func EndorsementKey(e *approval.Endorsement) string { return e.RunID + "." + e.ID }

// CreateEndorsement stores a new endorsement with its run.
func (s *Store) CreateEndorsement(ctx context.Context, e *approval.Endorsement) error {
	return s.create(ctx, s.endorsed, EndorsementKey(e), e, "endorsement "+e.ID)
}

// AllEndorsements lists the endorsements of the unfinished runs.
func (s *Store) AllEndorsements(ctx context.Context) ([]approval.Endorsement, error) {
	return all[approval.Endorsement](ctx, s.endorsed)
}

// PurgeEndorsements forgets the endorsements of the finished run id.
func (s *Store) PurgeEndorsements(ctx context.Context, id string) error {
	return s.purgeRun(ctx, s.endorsedName, id)
}
