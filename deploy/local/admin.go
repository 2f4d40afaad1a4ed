package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fundplatform/fund/gateway/auth"
)

// Bounds of the cluster's own admin calls.
const (
	adminTimeout    = 10 * time.Second
	adminAttempts   = 10 // on 502, 503, 504 or no answer, with the same key
	adminPause      = 200 * time.Millisecond
	adminTokenTTL   = time.Hour
	adminBodyMax    = 1 << 20
	metricsBytesMax = 8 << 20
)

// ClockNow reads the business time from the front (GET /v1/admin/clock).
func (c *Cluster) ClockNow(ctx context.Context) (time.Time, error) {
	var v struct {
		Now string `json:"now"`
	}
	if err := c.admin(ctx, "GET", "/v1/admin/clock", "", nil, &v); err != nil {
		return time.Time{}, err
	}
	return time.Parse(time.RFC3339Nano, v.Now)
}

// AdvanceClock moves the shared test clock to `to` (RFC 3339) through the
// front, once for key; a clock already past it is left alone.
func (c *Cluster) AdvanceClock(ctx context.Context, to, key string) error {
	target, err := time.Parse(time.RFC3339, to)
	if err != nil {
		return err
	}
	now, err := c.ClockNow(ctx)
	if err != nil {
		return err
	}
	if !now.Before(target) {
		return nil
	}
	return c.admin(ctx, "POST", "/v1/admin/clock:advance", key, map[string]string{"to": to}, nil)
}

// admin makes an admin call through the front with a token of the
// cluster's key, again with the same idempotency key while the answer is
// 502, 503, 504 or none (a bounded number of times), and decodes a 200
// answer into out.
func (c *Cluster) admin(ctx context.Context, method, path, key string, body, out any) error {
	token, err := auth.Mint(c.JWTKey, auth.Claims{Scopes: []string{auth.ScopeAdmin}}, adminTokenTTL, time.Now())
	if err != nil {
		return err
	}
	var payload []byte
	if body != nil {
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	client := &http.Client{Timeout: adminTimeout}
	var last error
	for range adminAttempts {
		req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URL, "/")+path, bytes.NewReader(payload))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := client.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(io.LimitReader(resp.Body, adminBodyMax))
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode == http.StatusOK:
				if out == nil {
					return nil
				}
				return json.Unmarshal(b, out)
			case resp.StatusCode < 502 || resp.StatusCode > 504:
				return fmt.Errorf("%s %s: %d %.300s", method, path, resp.StatusCode, b)
			default:
				err = fmt.Errorf("%s %s: %d %.300s", method, path, resp.StatusCode, b)
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), last)
		case <-time.After(adminPause):
		}
	}
	return last
}

// Metric sums every sample of a Prometheus metric on p's /metrics
// (name alone or with labels).
func (c *Cluster) Metric(ctx context.Context, p *Process, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+p.HTTPAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s /metrics: %w", p.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, metricsBytesMax))
	if err != nil {
		return 0, err
	}
	var sum float64
	found := false
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, name+" ") && !strings.HasPrefix(l, name+"{") {
			continue
		}
		f := strings.Fields(l)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum, found = sum+v, true
		}
	}
	if !found {
		return 0, fmt.Errorf("%s /metrics: no %s", p.Name, name)
	}
	return sum, nil
}
