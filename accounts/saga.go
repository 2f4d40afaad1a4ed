package accounts

import (
	"context"
	"errors"
	"fmt"

	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/xshard"
)

// Transfers between customers on two shards run as a saga (ledger/xshard):
// the order places leg 1 alone on the payer's shard (payer's cash to the
// shard's in-transit account, the payee in its user data) and is stored
// PENDING. The ledger owners' consumer group then credits the payee on its
// shard, or, when the payee's accounts refuse (closed since, or never
// created), returns the money to the payer. Nothing tells this service
// when: a pending transfer is resolved by asking the shards what they
// committed (xshard.Router.Status) when its order is read (OrderStatus,
// History, a retry of the request) and by a sweep of the pending ones
// (ResolvePendingTransfers, which the gateway role runs in the background).
// The first resolution records the final status; the ledger's entries are
// final, so a later one can only agree.

// Limits of the resolution of pending transfers.
const (
	// PendingTransfersMax bounds the orders one ResolvePendingTransfers
	// call looks at.
	PendingTransfersMax = 1000
	// closePendingMax bounds the payer's pending transfers Close resolves
	// before deciding.
	closePendingMax = 100
)

// sagaTransfer is the plain transfer behind a transfer order: the one a
// same-shard transfer books, and the one whose saga xshard.Router.Status
// answers for when the payee is on another shard (leg 1 has its id).
func sagaTransfer(o *Order) ledger.Transfer {
	return ledger.Transfer{
		ID: transferID(o.CustomerID, o.RequestID, 0), DebitAccountID: CashAccount(o.CustomerID),
		CreditAccountID: CashAccount(CustomerID(o.Counterparty)), Amount: o.Amount, Asset: ledger.AssetCNY,
		Kind: TransferCustomerToCustomer, UserData: o.RequestID,
	}
}

// pendingTransfer reports whether o waits for a saga.
func pendingTransfer(o *Order) bool { return o.Kind == KindTransfer && o.Status == OrderPending }

// resolve records how the saga of a pending transfer order ended, if it
// has, and returns the order as it stands; any other order is returned as
// it is. An error leaves the order pending (a shard or the store did not
// answer), to be resolved later.
func (s *Service) resolve(ctx context.Context, o Order) (Order, error) {
	if !pendingTransfer(&o) {
		return o, nil
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LedgerTimeout)
	defer cancel()
	out, err := s.saga.Status(lctx, sagaTransfer(&o))
	if err != nil {
		return o, fmt.Errorf("transfer %d/%s: %w", o.CustomerID, o.RequestID, err)
	}
	var reason string
	switch out.State {
	case xshard.InFlight:
		return o, nil
	case xshard.Refunded:
		if reason, err = s.refundReason(ctx, CustomerID(o.Counterparty)); err != nil {
			return o, err
		}
		return s.store.ResolveTransfer(ctx, o.CustomerID, o.RequestID, OrderRefunded, reason)
	}
	return s.store.ResolveTransfer(ctx, o.CustomerID, o.RequestID, OrderCompleted, "")
}

// refundReason tells why the payee's shard refused a transfer. The saga
// does not keep the ledger's refusal, and the payee was checked (not
// closed, known) when the order was placed, so it is what became of the
// payee since.
func (s *Service) refundReason(ctx context.Context, payee CustomerID) (string, error) {
	c, err := s.store.Customer(ctx, payee)
	switch {
	case errors.Is(err, ErrCustomerNotFound):
		return ReasonPayeeUnknown, nil
	case err != nil:
		return "", fmt.Errorf("payee %d of a refunded transfer: %w", payee, err)
	case c.Status == StatusClosed:
		return ReasonPayeeClosed, nil
	}
	return ReasonPayeeRefused, nil
}

// resolveAll resolves the pending transfers among os in place, stopping at
// the first that cannot be resolved now (whose shard is likely to fail the
// next one too, each after a timeout); the rest stay as they are. It
// returns how many ended and that error.
func (s *Service) resolveAll(ctx context.Context, os []Order) (int, error) {
	ended := 0
	for i := range os {
		if !pendingTransfer(&os[i]) {
			continue
		}
		o, err := s.resolve(ctx, os[i])
		if err != nil {
			return ended, err
		}
		if o.Status != OrderPending {
			ended++
		}
		os[i] = o
	}
	return ended, nil
}

// resolveRead resolves the pending transfers a read is about to answer
// with. A read is answered whatever happens: one that could not be
// resolved now is answered PENDING, as stored, and is logged.
func (s *Service) resolveRead(ctx context.Context, os []Order) {
	if _, err := s.resolveAll(ctx, os); err != nil {
		s.log.Debug("pending transfer not resolved", "err", err)
	}
}

// ResolvePendingTransfers looks at up to limit (1..PendingTransfersMax)
// pending transfer orders and records those whose saga has ended. Each
// call goes on from where the last one stopped, starting over after the
// newest, so a sweep every tick reaches every pending transfer however
// many wait. It stops at the first order it cannot resolve now (a shard or
// the store not answering) and returns that error; the next call goes on
// after that order (one that keeps failing must not hold up the others),
// which is looked at again on the next round. ended is how many orders it
// resolved.
func (s *Service) ResolvePendingTransfers(ctx context.Context, limit int) (ended int, err error) {
	if limit <= 0 || limit > PendingTransfersMax {
		return 0, fmt.Errorf("pending transfers limit %d: want 1..%d", limit, PendingTransfersMax)
	}
	os, err := s.store.PendingTransfers(ctx, 0, s.sweepAfter.Load(), limit)
	if err != nil {
		return 0, err
	}
	for _, o := range os {
		r, err := s.resolve(ctx, o)
		if err != nil {
			s.sweepAfter.Store(o.ID)
			return ended, err
		}
		if r.Status != OrderPending {
			ended++
		}
	}
	if len(os) < limit {
		s.sweepAfter.Store(0)
	} else {
		s.sweepAfter.Store(os[len(os)-1].ID)
	}
	return ended, nil
}

// transfersInFlight resolves customer c's pending transfers and reports
// whether any is still in flight (its money may yet come back).
func (s *Service) transfersInFlight(ctx context.Context, c CustomerID) (bool, error) {
	os, err := s.store.PendingTransfers(ctx, c, 0, closePendingMax)
	if err != nil {
		return false, err
	}
	ended, err := s.resolveAll(ctx, os)
	if err != nil {
		return false, err
	}
	return ended < len(os), nil
}
