package runstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsretry"
	"github.com/sluicehq/sluice/orchestrator/approval"
)

// GetRemembered returns a remembered answer and its revision.
func (s *Store) GetRemembered(ctx context.Context, id string) (*approval.Remembered, uint64, error) {
	var e jetstream.KeyValueEntry
	err := jsretry.Do(ctx, func(ctx context.Context) (err error) { e, err = s.remembered.Get(ctx, id); return err })
	if err != nil {
		return nil, 0, err
	}
	var r approval.Remembered
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("remembered answer %s: malformed record: %w", id, err)
	}
	return &r, e.Revision(), nil
}

// CreateRemembered stores a new remembered answer.
func (s *Store) CreateRemembered(ctx context.Context, r *approval.Remembered) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tries := 0
	err = s.do(ctx, func(ctx context.Context) error {
		tries++
		_, err := s.remembered.Create(ctx, r.ID, b)
		if tries > 1 && errors.Is(err, jetstream.ErrKeyExists) {
			return s.wrote(ctx, s.remembered, r.ID, b)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("record remembered answer %s: %w", r.ID, err)
	}
	return nil
}

// UpdateRemembered writes r only if the stored one is still at revision
// rev: two uses cannot both count against the same remainder of a cap.
func (s *Store) UpdateRemembered(ctx context.Context, r *approval.Remembered, rev uint64) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tries := 0
	return s.do(ctx, func(ctx context.Context) error {
		tries++
		_, err := s.remembered.Update(ctx, r.ID, b, rev)
		if tries > 1 && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
			return s.wrote(ctx, s.remembered, r.ID, b)
		}
		return err
	})
}

// AllRemembered lists every remembered answer, revoked and expired ones
// included.
func (s *Store) AllRemembered(ctx context.Context) ([]approval.Remembered, error) {
	var out []approval.Remembered
	err := each(ctx, s.remembered, "", func(b []byte) error {
		var r approval.Remembered
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// EndorsementKey is the EndorsedBucket key of an endorsement: its run's
// id, then its own.
func EndorsementKey(e *approval.Endorsement) string { return e.RunID + "." + e.ID }

// CreateEndorsement stores a new endorsement with its run.
func (s *Store) CreateEndorsement(ctx context.Context, e *approval.Endorsement) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	key := EndorsementKey(e)
	tries := 0
	err = s.do(ctx, func(ctx context.Context) error {
		tries++
		_, err := s.endorsed.Create(ctx, key, b)
		if tries > 1 && errors.Is(err, jetstream.ErrKeyExists) {
			return s.wrote(ctx, s.endorsed, key, b)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("record endorsement %s: %w", e.ID, err)
	}
	return nil
}

// AllEndorsements lists the endorsements of the unfinished runs.
func (s *Store) AllEndorsements(ctx context.Context) ([]approval.Endorsement, error) {
	var out []approval.Endorsement
	err := each(ctx, s.endorsed, "", func(b []byte) error {
		var e approval.Endorsement
		if err := json.Unmarshal(b, &e); err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// PurgeEndorsements forgets the endorsements of the finished run id.
func (s *Store) PurgeEndorsements(ctx context.Context, id string) error {
	return s.purgeRun(ctx, EndorsedBucket, id)
}
