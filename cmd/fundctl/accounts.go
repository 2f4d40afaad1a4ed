package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// accountsReadyTimeout bounds loading the ledger shard before a command.
const accountsReadyTimeout = time.Minute

// accountsLeaseTTL is the lease a command holds on the ledger shard. It is
// not renewed: a command that outlives it may be fenced, which fails its
// writes safely; a command that dies holds the shard up for at most this.
const accountsLeaseTTL = 2 * time.Minute

// accountsOpts are the flags every accounts subcommand shares.
type accountsOpts struct {
	dsn        string
	asJSON     bool
	fastMaxStr string
}

// newAccountsCmd is `fundctl accounts`: customers, orders and queries. Until
// the gateway exists, each command runs the ledger shard in-process against
// --dsn for its own duration, so it must not run beside another owner of
// the shard (such as a running fundd).
func newAccountsCmd() *cobra.Command {
	o := &accountsOpts{}
	cmd := &cobra.Command{
		Use:   "accounts",
		Short: "Customers, orders, holdings and history (runs the ledger shard in-process against --dsn)",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.dsn, "dsn", os.Getenv(localpg.EnvDSN), "Postgres DSN holding the ledger and accounts tables")
	pf.BoolVar(&o.asJSON, "json", false, "print JSON instead of a table")
	pf.StringVar(&o.fastMaxStr, "fast-redeem-daily-max", "10000.00", "fast redemption cap per customer per natural day, CNY")
	cmd.AddCommand(
		o.openCmd(), o.statusCmd("freeze"), o.statusCmd("unfreeze"), o.statusCmd("close"),
		o.orderCmd("top-up", accounts.KindTopUp), o.orderCmd("subscribe", accounts.KindSubscribe),
		o.orderCmd("fast-redeem", accounts.KindFastRedeem), o.orderCmd("standard-redeem", accounts.KindStandardRedeem),
		o.orderCmd("withdraw", accounts.KindWithdraw), o.orderCmd("transfer", accounts.KindTransfer),
		o.orderCmd("pay", accounts.KindPay),
		o.holdingsCmd(), o.historyCmd(), o.orderStatusCmd(), o.merchantCmd(), o.holidayCmd(),
	)
	return cmd
}

// withService opens both stores, runs the ledger shard and the service for
// the duration of fn.
func (o *accountsOpts) withService(ctx context.Context, fn func(*accounts.Service, *accountspg.Store) error) (err error) {
	if o.dsn == "" {
		return fmt.Errorf("--dsn (or %s) is required", localpg.EnvDSN)
	}
	fastMax, err := accounts.ParseAmount(o.fastMaxStr)
	if err != nil {
		return fmt.Errorf("--fast-redeem-daily-max: %w", err)
	}
	lstore, err := postgres.Open(ctx, postgres.Config{DSN: o.dsn, ConnsMax: 4})
	if err != nil {
		return fmt.Errorf("ledger store: %w", err)
	}
	defer lstore.Close()
	astore, err := accountspg.Open(ctx, accountspg.Config{DSN: o.dsn, ConnsMax: 4})
	if err != nil {
		return fmt.Errorf("accounts store: %w", err)
	}
	defer astore.Close()

	// The command is the shard's owner for its duration, through a lease
	// like any owner: it writes at a fresh fencing epoch (after a
	// settlement run took the shard, epoch 0 would be refused), and it
	// refuses to start beside a live owner such as a running fundd.
	owner := fmt.Sprintf("fundctl-accounts-%d", os.Getpid())
	epoch, ok, err := lstore.AcquireLease(ctx, 0, owner, "", accountsLeaseTTL)
	if err != nil {
		return fmt.Errorf("ledger shard lease: %w", err)
	}
	if !ok {
		return errors.New("ledger shard 0 is owned by another process (a running fundd?); use the gateway, or stop it first")
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if rerr := lstore.ReleaseLease(rctx, 0, owner, epoch); rerr != nil && err == nil {
			err = rerr
		}
	}()
	seq := ledger.NewSequencer(ledger.SequencerConfig{Shard: 0, Epoch: epoch}, lstore, nil)
	stop, err := seq.Start(ctx, accountsReadyTimeout)
	if err != nil {
		return fmt.Errorf("ledger shard: %w", err)
	}
	defer func() {
		if runErr := stop(); runErr != nil && err == nil {
			err = fmt.Errorf("ledger shard: %w", runErr)
		}
	}()
	svc, err := accounts.NewService(ctx, accounts.Config{FastRedeemDailyMax: fastMax}, astore, seq, nil)
	if err != nil {
		return err
	}
	return fn(svc, astore)
}

func (o *accountsOpts) print(w io.Writer, v any, table func(*tabwriter.Writer)) error {
	if o.asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func parseCustomer(s string) (accounts.CustomerID, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("customer id %q: want a positive integer", s)
	}
	return accounts.CustomerID(v), nil
}

func dateString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.DateOnly)
}

// customerJSON and orderJSON are the JSON views: amounts as decimal strings.
type customerJSON struct {
	ID        int64  `json:"id"`
	RequestID string `json:"request_id"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
}

func customerView(c accounts.Customer) customerJSON {
	return customerJSON{int64(c.ID), c.RequestID, c.Name, string(c.Status), c.CreatedAt.Format(time.RFC3339)}
}

func printCustomer(o *accountsOpts, w io.Writer, c accounts.Customer) error {
	v := customerView(c)
	return o.print(w, v, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "CUSTOMER\tREQUEST\tNAME\tSTATUS\tCREATED")
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.ID, v.RequestID, v.Name, v.Status, v.CreatedAt)
	})
}

type orderJSON struct {
	ID           int64  `json:"id"`
	Customer     int64  `json:"customer"`
	RequestID    string `json:"request_id"`
	Kind         string `json:"kind"`
	Amount       string `json:"amount"`
	Counterparty int64  `json:"counterparty,omitempty"`
	Incoming     bool   `json:"incoming,omitempty"`
	TradeDate    string `json:"trade_date"`
	ConfirmDate  string `json:"confirm_date,omitempty"`
	Status       string `json:"status"`
	Reason       string `json:"reason,omitempty"`
	CreatedAt    string `json:"created_at"`
}

func orderView(o accounts.Order, incoming bool) orderJSON {
	return orderJSON{o.ID, int64(o.CustomerID), o.RequestID, string(o.Kind), accounts.FormatAmount(o.Amount),
		o.Counterparty, incoming, dateString(o.TradeDate), dateString(o.ConfirmDate), string(o.Status), o.Reason,
		o.CreatedAt.Format(time.RFC3339)}
}

const orderHeader = "ORDER\tCUSTOMER\tREQUEST\tKIND\tAMOUNT\tCOUNTERPARTY\tTRADE DATE\tCONFIRM DATE\tSTATUS\tREASON"

func orderRow(tw io.Writer, v orderJSON) {
	kind := v.Kind
	if v.Incoming {
		kind += " (in)"
	}
	cp := ""
	if v.Counterparty != 0 {
		cp = strconv.FormatInt(v.Counterparty, 10)
	}
	fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Customer, v.RequestID, kind, v.Amount, cp,
		v.TradeDate, v.ConfirmDate, v.Status, v.Reason)
}

func (o *accountsOpts) openCmd() *cobra.Command {
	var requestID string
	cmd := &cobra.Command{
		Use:   "open NAME",
		Short: "Open a customer with its cash and fund-share accounts",
		Long: `Open a customer with its cash and fund-share accounts.

Opening carries a request id: repeating the command with the same
--request-id and NAME shows the customer the first one opened and never
opens a second; the same --request-id with another NAME is refused. Without
--request-id a random one is chosen and printed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if requestID == "" {
				requestID = ledger.NewTransferID().String()
			}
			return o.withService(cmd.Context(), func(svc *accounts.Service, _ *accountspg.Store) error {
				c, err := svc.OpenCustomer(cmd.Context(), requestID, args[0])
				if c.ID == 0 {
					return fmt.Errorf("request %s: %w", requestID, err)
				}
				// A conflicting retry shows the customer the request id
				// opened, and its error sets the exit status.
				if perr := printCustomer(o, cmd.OutOrStdout(), c); perr != nil {
					return perr
				}
				if err != nil {
					return fmt.Errorf("request %s: %w", requestID, err)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&requestID, "request-id", "", "client request id (idempotency key); default: random")
	return cmd
}

func (o *accountsOpts) statusCmd(action string) *cobra.Command {
	short := map[string]string{
		"freeze":   "Freeze a customer: money may come in but not go out",
		"unfreeze": "Lift a customer's freeze",
		"close":    "Close a customer whose cash and shares are all zero",
	}[action]
	return &cobra.Command{
		Use:   action + " CUSTOMER",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseCustomer(args[0])
			if err != nil {
				return err
			}
			return o.withService(cmd.Context(), func(svc *accounts.Service, _ *accountspg.Store) error {
				var c accounts.Customer
				switch action {
				case "freeze":
					c, err = svc.Freeze(cmd.Context(), id)
				case "unfreeze":
					c, err = svc.Unfreeze(cmd.Context(), id)
				default:
					c, err = svc.Close(cmd.Context(), id)
				}
				if err != nil {
					return err
				}
				return printCustomer(o, cmd.OutOrStdout(), c)
			})
		},
	}
}

func (o *accountsOpts) orderCmd(name string, kind accounts.OrderKind) *cobra.Command {
	var requestID string
	use, short, nargs := name+" CUSTOMER AMOUNT", "", 2
	switch kind {
	case accounts.KindTopUp:
		short = "Top up cash from the customer's bank card"
	case accounts.KindSubscribe:
		short = "Subscribe: cash to fund shares, confirmed by settlement after the cut-off rules"
	case accounts.KindFastRedeem:
		short = "Fast (T+0) redemption: shares to cash at once, within the daily cap"
	case accounts.KindStandardRedeem:
		short = "Standard redemption: shares held now, cash paid by settlement the next trading day"
	case accounts.KindWithdraw:
		short = "Withdraw cash to the customer's bank card"
	case accounts.KindTransfer:
		use, short, nargs = name+" CUSTOMER TO-CUSTOMER AMOUNT", "Transfer cash to another customer", 3
	case accounts.KindPay:
		use, short, nargs = name+" CUSTOMER MERCHANT AMOUNT", "Pay a merchant from fund shares", 3
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

AMOUNT is in CNY with at most two decimals, e.g. 12.30. Every order carries a
request id: repeating the command with the same --request-id returns the
original result and never moves money twice. Without --request-id a random
one is chosen and printed.`,
		Args: cobra.ExactArgs(nargs),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseCustomer(args[0])
			if err != nil {
				return err
			}
			amount, err := accounts.ParseAmount(args[nargs-1])
			if err != nil {
				return err
			}
			var other int64
			if nargs == 3 {
				if other, err = strconv.ParseInt(args[1], 10, 64); err != nil || other <= 0 {
					return fmt.Errorf("%q: want a positive integer id", args[1])
				}
			}
			if requestID == "" {
				requestID = ledger.NewTransferID().String()
			}
			return o.withService(cmd.Context(), func(svc *accounts.Service, _ *accountspg.Store) error {
				ctx := cmd.Context()
				var ord accounts.Order
				switch kind {
				case accounts.KindTopUp:
					ord, err = svc.TopUp(ctx, id, requestID, amount)
				case accounts.KindSubscribe:
					ord, err = svc.Subscribe(ctx, id, requestID, amount)
				case accounts.KindFastRedeem:
					ord, err = svc.FastRedeem(ctx, id, requestID, amount)
				case accounts.KindStandardRedeem:
					ord, err = svc.StandardRedeem(ctx, id, requestID, amount)
				case accounts.KindWithdraw:
					ord, err = svc.Withdraw(ctx, id, requestID, amount)
				case accounts.KindTransfer:
					ord, err = svc.Transfer(ctx, id, requestID, accounts.CustomerID(other), amount)
				case accounts.KindPay:
					ord, err = svc.Pay(ctx, id, requestID, accounts.MerchantID(other), amount)
				}
				if ord.ID == 0 {
					if err == nil {
						err = errors.New("no order returned")
					}
					return fmt.Errorf("request %s: %w", requestID, err)
				}
				// A stored order (placed, rejected or conflicting) is shown,
				// and its error returned so the exit status tells.
				v := orderView(ord, false)
				if perr := o.print(cmd.OutOrStdout(), v, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, orderHeader)
					orderRow(tw, v)
				}); perr != nil {
					return perr
				}
				if err != nil {
					return fmt.Errorf("request %s: %w", requestID, err)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&requestID, "request-id", "", "client request id (idempotency key); default: random")
	return cmd
}

type holdingsJSON struct {
	Customer                   int64  `json:"customer"`
	Status                     string `json:"status"`
	AvailableCash              string `json:"available_cash"`
	Shares                     string `json:"shares"`
	SharesAwaitingConfirmation string `json:"shares_awaiting_confirmation"`
	SharesAwaitingPayout       string `json:"shares_awaiting_payout"`
	FrozenCash                 string `json:"frozen_cash"`
	FrozenShares               string `json:"frozen_shares"`
	YesterdayIncome            string `json:"yesterday_income"`
	CumulativeIncome           string `json:"cumulative_income"`
	SevenDayYield              string `json:"seven_day_yield"`
	SevenDayYieldDate          string `json:"seven_day_yield_date,omitempty"`
}

func (o *accountsOpts) holdingsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "holdings CUSTOMER",
		Short: "Show a customer's cash, shares, pending and frozen amounts",
		Long: `Show a customer's cash, shares, pending and frozen amounts, yesterday's and
cumulative income, and the fund's latest 7-day annualised yield. Income and
the yield come from the settlement run: until it records any they show 0.00
and "-".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseCustomer(args[0])
			if err != nil {
				return err
			}
			return o.withService(cmd.Context(), func(svc *accounts.Service, _ *accountspg.Store) error {
				h, err := svc.Holdings(cmd.Context(), id)
				if err != nil {
					return err
				}
				f := accounts.FormatAmount
				v := holdingsJSON{int64(h.CustomerID), string(h.Status), f(h.AvailableCash), f(h.Shares),
					f(h.SharesAwaitingConfirmation), f(h.SharesAwaitingPayout), f(h.FrozenCash), f(h.FrozenShares),
					f(h.YesterdayIncome), f(h.CumulativeIncome), h.SevenDayYield, dateString(h.SevenDayYieldDate)}
				return o.print(cmd.OutOrStdout(), v, func(tw *tabwriter.Writer) {
					yield := v.SevenDayYield
					if yield == "" {
						yield = "-"
					} else {
						yield += "% (" + v.SevenDayYieldDate + ")"
					}
					rows := [][2]string{
						{"customer", strconv.FormatInt(v.Customer, 10)}, {"status", v.Status},
						{"available cash", v.AvailableCash}, {"shares", v.Shares},
						{"shares awaiting confirmation", v.SharesAwaitingConfirmation},
						{"shares awaiting payout", v.SharesAwaitingPayout},
						{"frozen cash", v.FrozenCash}, {"frozen shares", v.FrozenShares},
						{"yesterday's income", v.YesterdayIncome}, {"cumulative income", v.CumulativeIncome},
						{"7-day annualised yield", yield},
					}
					for _, r := range rows {
						fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
					}
				})
			})
		},
	}
}

func (o *accountsOpts) historyCmd() *cobra.Command {
	var (
		kinds    []string
		from, to string
		cursor   string
		limit    int
	)
	cmd := &cobra.Command{
		Use:   "history CUSTOMER",
		Short: "List a customer's orders, newest first, a page at a time",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseCustomer(args[0])
			if err != nil {
				return err
			}
			q := accounts.HistoryQuery{CustomerID: id, Cursor: cursor, Limit: limit}
			for _, k := range kinds {
				kind, err := accounts.ParseOrderKind(k)
				if err != nil {
					return err
				}
				q.Kinds = append(q.Kinds, kind)
			}
			for _, d := range []struct {
				s   string
				dst *time.Time
			}{{from, &q.From}, {to, &q.To}} {
				if d.s == "" {
					continue
				}
				if *d.dst, err = time.Parse(time.DateOnly, d.s); err != nil {
					return fmt.Errorf("date %q: want YYYY-MM-DD", d.s)
				}
			}
			return o.withService(cmd.Context(), func(svc *accounts.Service, _ *accountspg.Store) error {
				page, err := svc.History(cmd.Context(), q)
				if err != nil {
					return err
				}
				v := struct {
					Orders     []orderJSON `json:"orders"`
					NextCursor string      `json:"next_cursor,omitempty"`
				}{Orders: make([]orderJSON, len(page.Entries)), NextCursor: page.NextCursor}
				for i, e := range page.Entries {
					v.Orders[i] = orderView(e.Order, e.Incoming)
				}
				return o.print(cmd.OutOrStdout(), v, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, orderHeader)
					for _, r := range v.Orders {
						orderRow(tw, r)
					}
					if v.NextCursor != "" {
						fmt.Fprintf(tw, "next page: --cursor %s\n", v.NextCursor)
					}
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&kinds, "kind", nil, fmt.Sprintf("only these kinds (repeatable): %v", accounts.OrderKinds))
	f.StringVar(&from, "from", "", "first trade date, YYYY-MM-DD")
	f.StringVar(&to, "to", "", "last trade date, YYYY-MM-DD")
	f.StringVar(&cursor, "cursor", "", "cursor printed by the previous page")
	f.IntVar(&limit, "limit", accounts.HistoryLimitDefault, fmt.Sprintf("orders per page, at most %d", accounts.HistoryLimitMax))
	return cmd
}

func (o *accountsOpts) orderStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "order CUSTOMER REQUEST-ID",
		Short: "Show the status of an order by its request id",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseCustomer(args[0])
			if err != nil {
				return err
			}
			return o.withService(cmd.Context(), func(svc *accounts.Service, _ *accountspg.Store) error {
				ord, err := svc.OrderStatus(cmd.Context(), id, args[1])
				if err != nil {
					return err
				}
				v := orderView(ord, false)
				return o.print(cmd.OutOrStdout(), v, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, orderHeader)
					orderRow(tw, v)
				})
			})
		},
	}
}

func (o *accountsOpts) merchantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "merchant", Short: "Merchants that customers pay"}
	cmd.AddCommand(&cobra.Command{
		Use:   "register MERCHANT-ID",
		Short: "Create a merchant's ledger account (idempotent)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || m <= 0 {
				return fmt.Errorf("merchant id %q: want a positive integer", args[0])
			}
			return o.withService(cmd.Context(), func(svc *accounts.Service, _ *accountspg.Store) error {
				if err := svc.RegisterMerchant(cmd.Context(), accounts.MerchantID(m)); err != nil {
					return err
				}
				v := map[string]int64{"merchant": m, "ledger_account": int64(accounts.MerchantAccountOn(accounts.MerchantID(m), 0, 1))}
				return o.print(cmd.OutOrStdout(), v, func(tw *tabwriter.Writer) {
					fmt.Fprintf(tw, "merchant %d registered (ledger account %d)\n", m, v["ledger_account"])
				})
			})
		},
	})
	return cmd
}

func (o *accountsOpts) holidayCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "holiday", Short: "The trading calendar's holidays (weekends are never trading days)"}
	withStore := func(ctx context.Context, fn func(*accountspg.Store) error) error {
		if o.dsn == "" {
			return fmt.Errorf("--dsn (or %s) is required", localpg.EnvDSN)
		}
		st, err := accountspg.Open(ctx, accountspg.Config{DSN: o.dsn, ConnsMax: 2})
		if err != nil {
			return err
		}
		defer st.Close()
		return fn(st)
	}
	list := func(cmd *cobra.Command, st *accountspg.Store) error {
		hs, err := st.Holidays(cmd.Context())
		if err != nil {
			return err
		}
		type holidayJSON struct {
			Date string `json:"date"`
			Name string `json:"name"`
		}
		v := make([]holidayJSON, len(hs))
		for i, h := range hs {
			v[i] = holidayJSON{dateString(h.Date), h.Name}
		}
		return o.print(cmd.OutOrStdout(), v, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "DATE\tWEEKDAY\tNAME")
			for i, h := range v {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", h.Date, hs[i].Date.Weekday(), h.Name)
			}
		})
	}
	parseDate := func(s string) (time.Time, error) {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return d, fmt.Errorf("date %q: want YYYY-MM-DD", s)
		}
		return d, nil
	}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List the holidays", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), func(st *accountspg.Store) error { return list(cmd, st) })
		},
	}, &cobra.Command{
		Use: "add DATE [NAME]", Short: "Make a date a non-trading day", Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := parseDate(args[0])
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			return withStore(cmd.Context(), func(st *accountspg.Store) error {
				if err := st.AddHoliday(cmd.Context(), accounts.Holiday{Date: d, Name: name}); err != nil {
					return err
				}
				return list(cmd, st)
			})
		},
	}, &cobra.Command{
		Use: "remove DATE", Short: "Make a date a trading day again (weekends stay non-trading)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := parseDate(args[0])
			if err != nil {
				return err
			}
			return withStore(cmd.Context(), func(st *accountspg.Store) error {
				if err := st.RemoveHoliday(cmd.Context(), d); err != nil {
					return err
				}
				return list(cmd, st)
			})
		},
	})
	return cmd
}
