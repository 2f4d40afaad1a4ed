package accounts

import (
	"context"
	"fmt"
	"sync"

	"github.com/fundplatform/fund/ledger"
)

// merchantsKnownMax bounds how many registered merchants a Service
// remembers. Past it the others are looked up in the ledger on every
// payment: still right, one ledger read more.
const merchantsKnownMax = 1 << 16

// knownMerchants remembers merchants found registered. Merchants are never
// unregistered, so a merchant once found stays payable and the hot ones
// cost no ledger read; one not found is not remembered, since it may be
// registered (by this process or another) at any time.
type knownMerchants struct {
	mu  sync.RWMutex
	ids map[MerchantID]struct{}
}

func (k *knownMerchants) has(m MerchantID) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	_, ok := k.ids[m]
	return ok
}

func (k *knownMerchants) add(m MerchantID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ids == nil {
		k.ids = make(map[MerchantID]struct{})
	}
	if len(k.ids) < merchantsKnownMax {
		k.ids[m] = struct{}{}
	}
}

// checkMerchant returns ErrMerchantNotFound unless m is registered (its
// ledger account exists and is open). A payment checks it before its
// transfers go to the ledger, so that an unknown merchant is answered the
// same whatever the payer holds, and no order is stored for it: the
// ledger, failing the chain at its first leg that cannot apply, would
// otherwise answer a payer without shares with a rejected order.
func (s *Service) checkMerchant(ctx context.Context, m MerchantID, shard int) error {
	if s.merchants.has(m) {
		return nil
	}
	id := MerchantAccountOn(m, shard, s.cfg.Shards)
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LedgerTimeout)
	defer cancel()
	accts, err := s.ledger.LookupAccounts(lctx, []ledger.AccountID{id})
	if err != nil {
		return fmt.Errorf("look up merchant %d: %w", m, err)
	}
	if len(accts) == 0 || accts[0].ID != id || accts[0].Code != CodeMerchant {
		return fmt.Errorf("merchant %d: %w", m, ErrMerchantNotFound)
	}
	if accts[0].Closed {
		return fmt.Errorf("merchant %d is closed: %w", m, ErrMerchantNotFound)
	}
	s.merchants.add(m)
	return nil
}
