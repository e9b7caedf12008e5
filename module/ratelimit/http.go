package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HTTP header field names. RateLimit and RateLimit-Policy follow the IETF httpapi
// draft "RateLimit header fields for HTTP" (draft-ietf-httpapi-ratelimit-headers-10):
// Structured Field lists of items named after the resource's policies.
const (
	HeaderRateLimit       = "RateLimit"
	HeaderRateLimitPolicy = "RateLimit-Policy"
	HeaderRetryAfter      = "Retry-After"
	// HeaderDecision says that Redis did not decide: "local" for a decision of the
	// degraded mode (Options.FailLocal), "fail-open" for a fail-open grant. It is
	// absent when Redis decided.
	HeaderDecision = "Charon-Decision"
)

// MiddlewareOptions configure Limiter.Middleware.
type MiddlewareOptions struct {
	// Resource is the limited resource; it must be valid.
	Resource *Resource
	// Domain names on whose behalf an HTTP request is made (a user, an API key). nil
	// means the client's IP address (the host part of Request.RemoteAddr). An error
	// or an empty domain (a missing header) is the client's mistake: it is answered
	// by OnBadRequest, with an error wrapping ErrNoDomain.
	Domain func(r *http.Request) (string, error)
	// Hits is the number of hits an HTTP request costs (at least 1); nil means 1. A
	// value outside [1, MaxCount] is answered by OnBadRequest.
	Hits func(r *http.Request) int64
	// MaxWait lets a request wait that long for a rejection to clear (RequestArgs).
	MaxWait time.Duration
	// OnReject writes the response to a rejected request after the RateLimit,
	// RateLimit-Policy and Retry-After fields are set. nil writes 429 Too Many Requests.
	OnReject func(w http.ResponseWriter, r *http.Request, res *Result)
	// OnBadRequest writes the response when the HTTP request itself cannot be limited:
	// no domain (Domain failed or returned ""), or a hit count outside [1, MaxCount]. The error wraps
	// ErrNoDomain or ErrInvalid. nil writes 400 Bad Request, since it is the client's
	// mistake and must not page anyone; to let such requests through, call the next
	// handler from here.
	OnBadRequest func(w http.ResponseWriter, r *http.Request, err error)
	// OnError writes the response when the limiter fails (Redis unreachable without
	// FailOpen, outcome unknown, a server error). nil writes 503 Service Unavailable.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
}

// ErrNoDomain is wrapped by the error the middleware hands to OnBadRequest when an
// HTTP request has no domain: MiddlewareOptions.Domain failed or returned "".
var ErrNoDomain = errors.New("ratelimit: the request names no domain")

// requester is what the middleware needs of a Limiter (a seam for unit tests).
type requester interface {
	RequestWith(ctx context.Context, res *Resource, domain string, a RequestArgs) (*Result, error)
}

type resultKey struct{}

// ResultFromContext returns the Result the middleware stored in the request's context
// before calling the next handler, or nil.
func ResultFromContext(ctx context.Context) *Result {
	r, _ := ctx.Value(resultKey{}).(*Result)
	return r
}

// Middleware returns net/http middleware that asks for hits before each request. A
// granted request gets RateLimit and RateLimit-Policy header fields and goes on to the
// next handler; a rejected one gets the same fields, Retry-After (whole seconds,
// rounded up; absent when the request can never be granted) and 429.
// RateLimit-Policy lists every window: each tier ("t1", "t2", ...), the per-second
// caps ("hard", "global") and each cap over another window ("cap-1h" for a cap of
// Caps, "global-1d" for one of GlobalCaps). The RateLimit field gives the remaining
// hits of the current tier, "hard" and "global" (the windows the server's reply
// counts), and names the limit that rejected first, with its t parameter: a tier,
// "hard", "global", or a cap over a longer window when the reply singles it out
// (Result.RejectedCap). The Result is in the request context (ResultFromContext). A kill-switch
// or fail-open grant goes on to the next handler like any grant; a fail-open grant has
// no RateLimit field, since no server answer exists. A local decision (FailLocal,
// Redis unreachable) has no RateLimit field either: the fleet's remaining quota is
// unknown, and this instance's share is not what a client may use. Both carry
// Charon-Decision ("fail-open", "local"); a local rejection still gets 429 and the
// local Retry-After. A request without a domain gets 400 (OnBadRequest), a limiter
// failure 503 (OnError).
func (l *Limiter) Middleware(o MiddlewareOptions) (func(http.Handler) http.Handler, error) {
	return middleware(l, o)
}

func middleware(l requester, o MiddlewareOptions) (func(http.Handler) http.Handler, error) {
	if err := o.Resource.Validate(); err != nil {
		return nil, err
	}
	if o.MaxWait < 0 {
		return nil, invalid("negative max wait %v", o.MaxWait)
	}
	res := o.Resource
	policy := policyField(res)
	domainOf := o.Domain
	if domainOf == nil {
		domainOf = remoteIP
	}
	onReject, onError, onBad := o.OnReject, o.OnError, o.OnBadRequest
	if onReject == nil {
		onReject = func(w http.ResponseWriter, _ *http.Request, _ *Result) {
			http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
		}
	}
	if onBad == nil {
		onBad = func(w http.ResponseWriter, _ *http.Request, _ error) {
			http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
		}
	}
	if onError == nil {
		onError = func(w http.ResponseWriter, _ *http.Request, _ error) {
			http.Error(w, "rate limiter unavailable", http.StatusServiceUnavailable)
		}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			domain, err := domainOf(r)
			switch {
			case err != nil:
				onBad(w, r, fmt.Errorf("%w: %w", ErrNoDomain, err))
				return
			case domain == "":
				onBad(w, r, ErrNoDomain)
				return
			}
			hits := int64(1)
			if o.Hits != nil {
				if hits = o.Hits(r); hits < 1 {
					onBad(w, r, invalid("Hits returned %d, want at least 1", hits))
					return
				}
			}
			result, err := l.RequestWith(r.Context(), res, domain, RequestArgs{Min: hits, Max: hits, MaxWait: o.MaxWait})
			switch {
			case errors.Is(err, ErrInvalid):
				// The resource was validated above: what is left is the request's own
				// (a hit count above MaxCount).
				onBad(w, r, err)
				return
			case err != nil:
				onError(w, r, err)
				return
			}
			h := w.Header()
			h.Set(HeaderRateLimitPolicy, policy)
			switch {
			case result.Override == OverrideFailOpen:
				h.Set(HeaderDecision, "fail-open")
			case result.Local:
				h.Set(HeaderDecision, "local")
			default:
				h.Set(HeaderRateLimit, limitField(res, result))
			}
			if result.Granted == 0 {
				if result.RetryAfter != Never {
					h.Set(HeaderRetryAfter, strconv.FormatInt(ceilSeconds(result.RetryAfter), 10))
				}
				onReject(w, r, result)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), resultKey{}, result)))
		})
	}, nil
}

// remoteIP is the default domain: the client's address without the port.
func remoteIP(r *http.Request) (string, error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr, nil // not host:port (unusual servers); use it as it is
	}
	return host, nil
}

// ceilSeconds rounds d up to whole seconds, at least 1 for a positive d (delay-seconds
// has no fractions, and rounding down would invite a retry that is rejected again).
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// Policy item names: one per tier ("t1", "t2", ...), "hard" and "global" for the
// per-second caps, "cap-<window>" and "global-<window>" for caps over other windows
// (the window in the compact form's units: "cap-1h", "global-1d", "cap-90s").
func tierPolicy(i int) string { return "t" + strconv.Itoa(i) }

// capPolicy names a cap over a window other than one second: "cap-1h", "global-1d".
func capPolicy(global bool, c Cap) string {
	b := make([]byte, 0, 16)
	if global {
		b = append(b, "global-"...)
	} else {
		b = append(b, "cap-"...)
	}
	return string(appendCompactDuration(b, c.Per))
}

// policyField is RateLimit-Policy: every tier with its quota and window (seconds,
// rounded up, at least 1), then the per-domain caps (Hard, then Caps in order) and the
// resource-wide ones (Global, then GlobalCaps). It is the same on every response. A
// resource without tiers is advertised as a zero quota.
func policyField(res *Resource) string {
	var b strings.Builder
	item := func(name string, q int64, w time.Duration) {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`"` + name + `"`) // fixed ASCII names: no escaping needed
		b.WriteString(";q=")
		b.WriteString(strconv.FormatInt(q, 10))
		b.WriteString(";w=")
		b.WriteString(strconv.FormatInt(max(ceilSeconds(w), 1), 10))
	}
	for i, t := range res.Tiers {
		item(tierPolicy(i+1), t.Limit, t.Window)
	}
	if res.Closed {
		item("closed", 0, time.Second)
	}
	caps := func(global bool, name string, limit int64, caps []Cap) {
		if limit > 0 {
			item(name, limit, time.Second)
		}
		for _, c := range caps {
			if c.Per == time.Second {
				item(name, c.Limit, time.Second) // the per-second cap, written as a cap
			} else {
				item(capPolicy(global, c), c.Limit, c.Per)
			}
		}
	}
	caps(false, "hard", res.Hard, res.Caps)
	caps(true, "global", res.Global, res.GlobalCaps)
	return b.String()
}

// limitField is RateLimit: the remaining quota of the current tier (tier 1 when none
// is active) and of the per-second caps (Hard and Global), the windows the reply
// counts. On a rejection the limit that rejected (Result.RejectedBy) comes first and
// carries t, the seconds until the request could be granted (no t when it never can
// be). A cap over a longer window is listed only when it rejected and the reply
// singles it out (Result.RejectedCap): its r is 0, since it had less room than the
// request's hits (the reply does not say how much less). When the reply cannot tell
// which of several such caps rejected, no item carries t: Retry-After still does.
func limitField(res *Resource, r *Result) string {
	var b strings.Builder
	item := func(name string, remaining int64, t int64) {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`"` + name + `"`)
		b.WriteString(";r=")
		b.WriteString(strconv.FormatInt(max(remaining, 0), 10))
		if t >= 0 {
			b.WriteString(";t=")
			b.WriteString(strconv.FormatInt(t, 10))
		}
	}
	t := int64(-1)
	serverRejected := r.Granted == 0 || r.Override == OverrideKillSwitch
	if serverRejected && r.RetryAfter != Never {
		t = ceilSeconds(r.RetryAfter)
	}
	first := LimitTier
	switch {
	case res.Closed:
		first = LimitClosed
	case serverRejected && r.RejectedBy != LimitNone && r.RejectedBy != LimitTier:
		first = r.RejectedBy
	}
	at := func(l Limit) int64 { // t goes on the first item only
		if l == first {
			return t
		}
		return -1
	}
	hard, hasHard := perSecond(res.Hard, res.Caps)
	global, hasGlobal := perSecond(res.Global, res.GlobalCaps)
	switch first {
	case LimitClosed:
		item("closed", 0, t)
	case LimitHard:
		item("hard", hard-r.DomainHits, t)
	case LimitGlobal:
		item("global", global-r.GlobalHits, t)
	case LimitCap, LimitGlobalCap:
		if r.RejectedCap.Per != 0 {
			item(capPolicy(first == LimitGlobalCap, r.RejectedCap), 0, t)
		}
	}
	if !res.Closed {
		item(tierPolicy(max(r.Tier, 1)), r.TierLimit-r.TierHits, at(LimitTier))
	}
	if hasHard && first != LimitHard {
		item("hard", hard-r.DomainHits, -1)
	}
	if hasGlobal && first != LimitGlobal && r.GlobalHits >= 0 {
		item("global", global-r.GlobalHits, -1)
	}
	return b.String()
}
