package memory

import (
	"context"
	"fmt"
	"time"

	"mcpgw/store"
)

func (s *Store) CreatePendingState(ctx context.Context, p store.PendingProviderState) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.pending[string(p.StateHash)]; ok {
		return conflict("pending state exists")
	}
	p = clonePending(p)
	p.ConsumedAt = nil
	p.CreatedAt = s.stamp(p.CreatedAt)
	s.pending[string(p.StateHash)] = &p
	return nil
}

func (s *Store) ConsumePendingState(ctx context.Context, stateHash []byte, now time.Time) (store.PendingProviderState, error) {
	if err := store.ValidateHash("state_hash", stateHash); err != nil {
		return store.PendingProviderState{}, err
	}
	if err := store.ValidateTime("now", now); err != nil {
		return store.PendingProviderState{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.PendingProviderState{}, err
	}
	defer s.mu.Unlock()
	p, ok := s.pending[string(stateHash)]
	switch {
	case !ok:
		return store.PendingProviderState{}, notFound("pending state")
	case p.ConsumedAt != nil:
		return store.PendingProviderState{}, errConsumed("pending state")
	case expired(p.ExpiresAt, now):
		return store.PendingProviderState{}, errExpired("pending state")
	}
	p.ConsumedAt = ptr(now)
	return clonePending(*p), nil
}

func (s *Store) PutProviderRegistration(ctx context.Context, r store.ProviderRegistration) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	c, ok := s.configs[r.ConfigID]
	if !ok || c.Status == store.ConfigDeleted {
		return notFound("config")
	}
	if c.Version != r.ConfigVersion {
		return fmt.Errorf("%w: config version moved", store.ErrStale)
	}
	r = cloneRegistration(r)
	r.CreatedAt = s.stamp(r.CreatedAt)
	s.regs[regKey{r.ConfigID, r.ConfigVersion}] = &r
	return nil
}

func (s *Store) GetProviderRegistration(ctx context.Context, configID string, version int64) (store.ProviderRegistration, error) {
	if err := store.ValidateID("config_id", configID); err != nil {
		return store.ProviderRegistration{}, err
	}
	if err := store.ValidateConfigVersion("config_version", version); err != nil {
		return store.ProviderRegistration{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.ProviderRegistration{}, err
	}
	defer s.mu.Unlock()
	r, ok := s.regs[regKey{configID, version}]
	if !ok {
		return store.ProviderRegistration{}, notFound("provider registration")
	}
	return cloneRegistration(*r), nil
}
