package k8s

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const monitoringDir = "../monitoring"

// contractMetrics are the metric names the services export (the shared
// metric contract); histograms also have _bucket, _sum and _count series.
var contractMetrics = map[string]bool{
	"fund_gateway_requests_total":                    false,
	"fund_gateway_request_duration_seconds":          true,
	"fund_gateway_inflight":                          false,
	"fund_gateway_shed_total":                        false,
	"fund_gateway_breaker_state":                     false,
	"fund_ledger_shard_owned":                        false,
	"fund_ledger_batches_total":                      false,
	"fund_ledger_transfers_total":                    false,
	"fund_ledger_commit_duration_seconds":            true,
	"fund_outbox_lag_events":                         false,
	"fund_settlement_last_success_timestamp_seconds": false,
	"fund_settlement_accounts_total":                 false,
	"fund_recon_breaks":                              false,
	"fund_recon_consumer_lag_messages":               false,
	"fund_recon_events_total":                        false,
}

var metricName = regexp.MustCompile(`\bfund_[a-z0-9_]+`)

// metricsIn returns the contract metrics an expression uses and the names
// it uses that are not in the contract.
func metricsIn(expr string) (known, unknown []string) {
	for _, n := range metricName.FindAllString(expr, -1) {
		base := n
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(n, suf); ok && contractMetrics[b] {
				base = b
			}
		}
		if _, ok := contractMetrics[base]; ok && (base == n || contractMetrics[base]) {
			known = append(known, base)
		} else {
			unknown = append(unknown, n)
		}
	}
	return known, unknown
}

// balanced is a cheap PromQL sanity check: brackets nest and close.
func balanced(expr string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inQuote := false
	for _, r := range expr {
		switch {
		case r == '"':
			inQuote = !inQuote
		case inQuote:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !inQuote
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(monitoringDir, "alerts.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(b, &rf); err != nil {
		t.Fatalf("alerts.rules.yml: %v", err)
	}
	used := map[string]bool{}
	names := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: no name or no rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule without an alert name (record rules are not used here)", g.Name)
				continue
			}
			if names[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			names[r.Alert] = true
			if r.Expr == "" || !balanced(r.Expr) {
				t.Errorf("alert %s: expression %q is empty or unbalanced", r.Alert, r.Expr)
			}
			switch r.Labels["severity"] {
			case "page", "ticket":
			default:
				t.Errorf("alert %s: severity %q, want page or ticket", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s: no summary", r.Alert)
			}
			known, unknown := metricsIn(r.Expr)
			if len(unknown) > 0 {
				t.Errorf("alert %s uses metrics outside the contract: %v", r.Alert, unknown)
			}
			if len(known) == 0 {
				t.Errorf("alert %s uses no fund metric", r.Alert)
			}
			for _, m := range known {
				used[m] = true
			}
		}
	}
	// What the issue asks to be alerted on.
	for alert, metric := range map[string]string{
		"FundReconciliationBreaks":  "fund_recon_breaks",
		"FundOutboxLagHigh":         "fund_outbox_lag_events",
		"FundShardWithoutOwner":     "fund_ledger_shard_owned",
		"FundGatewayLatencyP99High": "fund_gateway_request_duration_seconds",
		"FundGatewayShedding":       "fund_gateway_shed_total",
	} {
		if !names[alert] {
			t.Errorf("no alert %s", alert)
		}
		if !used[metric] {
			t.Errorf("no alert uses %s", metric)
		}
	}
}

func TestPrometheusConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(monitoringDir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName string `json:"job_name"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	if len(cfg.ScrapeConfigs) == 0 {
		t.Error("prometheus.yml scrapes nothing")
	}
	for _, f := range cfg.RuleFiles {
		if _, err := os.Stat(filepath.Join(monitoringDir, f)); err != nil {
			t.Errorf("rule file %s: %v", f, err)
		}
	}
}

type dashPanel struct {
	Type    string      `json:"type"`
	Title   string      `json:"title"`
	Panels  []dashPanel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(monitoringDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string      `json:"uid"`
		Title  string      `json:"title"`
		Panels []dashPanel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json is not valid JSON: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard without uid or title")
	}
	shown := map[string]bool{}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if !balanced(tg.Expr) {
					t.Errorf("panel %q: unbalanced expression %q", p.Title, tg.Expr)
				}
				known, unknown := metricsIn(tg.Expr)
				if len(unknown) > 0 {
					t.Errorf("panel %q uses metrics outside the contract: %v", p.Title, unknown)
				}
				if len(known) == 0 {
					t.Errorf("panel %q: query %q uses no fund metric", p.Title, tg.Expr)
				}
				for _, m := range known {
					shown[m] = true
				}
			}
		}
	}
	walk(d.Panels)
	var missing []string
	for m := range contractMetrics {
		if !shown[m] {
			missing = append(missing, m)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard shows none of %v", missing)
	}
}

func TestMetricsInRule(t *testing.T) {
	known, unknown := metricsIn(`rate(fund_gateway_request_duration_seconds_bucket[1m]) + fund_recon_breaks + fund_recon_breaks_bucket + fund_made_up`)
	if !slices.Equal(known, []string{"fund_gateway_request_duration_seconds", "fund_recon_breaks"}) ||
		!slices.Equal(unknown, []string{"fund_recon_breaks_bucket", "fund_made_up"}) {
		t.Errorf("known %v unknown %v", known, unknown)
	}
	if balanced("sum(rate(x[1m])") || !balanced(`sum(rate(x{code=~"5.."}[1m]))`) {
		t.Error("balanced")
	}
}
