package ratelimit

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeRequester stands in for a Limiter in these unit tests only; the integration tests
// run the middleware against a real server.
type fakeRequester struct {
	result *Result
	err    error
	calls  []RequestArgs
	domain string
}

func (f *fakeRequester) RequestWith(_ context.Context, _ *Resource, domain string, a RequestArgs) (*Result, error) {
	f.calls = append(f.calls, a)
	f.domain = domain
	if f.err != nil {
		return nil, f.err
	}
	r := *f.result
	return &r, nil
}

func serve(t *testing.T, f *fakeRequester, o MiddlewareOptions) (*httptest.ResponseRecorder, *Result) {
	t.Helper()
	mw, err := middleware(f, o)
	require.NoError(t, err)
	var seen *Result
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = ResultFromContext(r.Context())
		_, _ = w.Write([]byte("ok"))
	}))
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.RemoteAddr = "192.0.2.7:5555"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec, seen
}

var penalty = Resource{Name: "api", Tiers: []Tier{
	{Limit: 5, Window: time.Second, Active: time.Second},
	{Limit: 50, Window: 5 * time.Second, Active: 5 * time.Second, Cooldown: 15 * time.Second},
}, Hard: 20}

func TestMiddlewareGranted(t *testing.T) {
	f := &fakeRequester{result: &Result{Granted: 1, Tier: 2, TierLimit: 50, TierHits: 7, DomainHits: 8, GlobalHits: -1, ResetAfter: time.Second}}
	rec, seen := serve(t, f, MiddlewareOptions{Resource: &penalty})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "ok", rec.Body.String())
	require.Equal(t, `"t1";q=5;w=1, "t2";q=50;w=5, "hard";q=20;w=1`, rec.Header().Get(HeaderRateLimitPolicy))
	require.Equal(t, `"t2";r=43, "hard";r=12`, rec.Header().Get(HeaderRateLimit))
	require.Empty(t, rec.Header().Get(HeaderRetryAfter))
	require.Equal(t, "192.0.2.7", f.domain, "default domain is the client IP")
	require.Equal(t, []RequestArgs{{Min: 1, Max: 1}}, f.calls)
	require.NotNil(t, seen)
	require.Equal(t, int64(1), seen.Granted)
}

func TestMiddlewareRejected(t *testing.T) {
	f := &fakeRequester{result: &Result{Granted: 0, Tier: 0, TierLimit: 5, TierHits: 5, DomainHits: 5, GlobalHits: 900,
		RetryAfter: 1001 * time.Millisecond}}
	res := penalty
	res.Global = 1000
	called := false
	rec, _ := serve(t, f, MiddlewareOptions{Resource: &res,
		Domain:  func(r *http.Request) (string, error) { return r.URL.Path, nil },
		Hits:    func(*http.Request) int64 { return 3 },
		MaxWait: time.Second,
		OnReject: func(w http.ResponseWriter, r *http.Request, res *Result) {
			called = true
			require.Equal(t, 1001*time.Millisecond, res.RetryAfter)
			w.WriteHeader(http.StatusTooManyRequests)
		}})
	require.True(t, called)
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Equal(t, "2", rec.Header().Get(HeaderRetryAfter), "1001ms rounds up to 2s")
	require.Equal(t, `"t1";r=0;t=2, "hard";r=15, "global";r=100`, rec.Header().Get(HeaderRateLimit))
	require.Equal(t, `"t1";q=5;w=1, "t2";q=50;w=5, "hard";q=20;w=1, "global";q=1000;w=1`, rec.Header().Get(HeaderRateLimitPolicy))
	require.Equal(t, "/x", f.domain)
	require.Equal(t, []RequestArgs{{Min: 3, Max: 3, MaxWait: time.Second}}, f.calls)
}

func TestMiddlewareDefaultRejectAndNever(t *testing.T) {
	f := &fakeRequester{result: &Result{Granted: 0, Tier: 1, TierLimit: 5, TierHits: 0, GlobalHits: -1, RetryAfter: Never}}
	rec, seen := serve(t, f, MiddlewareOptions{Resource: &penalty})
	require.Nil(t, seen)
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Empty(t, rec.Header().Get(HeaderRetryAfter), "never grantable: no Retry-After")
	require.Equal(t, `"t1";r=5, "hard";r=20`, rec.Header().Get(HeaderRateLimit))
}

func TestMiddlewareOverrides(t *testing.T) {
	f := &fakeRequester{result: &Result{Granted: 1, Override: OverrideKillSwitch, Tier: 1, TierLimit: 5, TierHits: 5, DomainHits: 5,
		GlobalHits: -1, RetryAfter: 300 * time.Millisecond}}
	rec, seen := serve(t, f, MiddlewareOptions{Resource: &penalty})
	require.Equal(t, http.StatusOK, rec.Code, "the kill switch lets the request through")
	require.Equal(t, `"t1";r=0;t=1, "hard";r=15`, rec.Header().Get(HeaderRateLimit), "and still tells the truth")
	require.Equal(t, OverrideKillSwitch, seen.Override)

	f = &fakeRequester{result: &Result{Granted: 1, Override: OverrideFailOpen, GlobalHits: -1}}
	rec, seen = serve(t, f, MiddlewareOptions{Resource: &penalty})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Empty(t, rec.Header().Get(HeaderRateLimit), "no server answer, no RateLimit field")
	require.NotEmpty(t, rec.Header().Get(HeaderRateLimitPolicy))
	require.Equal(t, OverrideFailOpen, seen.Override)
}

func TestMiddlewareErrors(t *testing.T) {
	f := &fakeRequester{err: errors.New("boom")}
	rec, seen := serve(t, f, MiddlewareOptions{Resource: &penalty})
	require.Nil(t, seen)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, "a limiter failure is the server's problem")

	// A request without a domain is the client's mistake: 400 by default, never 503.
	for name, domain := range map[string]func(*http.Request) (string, error){
		"error": func(*http.Request) (string, error) { return "", errors.New("no user") },
		"empty": func(r *http.Request) (string, error) { return r.Header.Get("X-Api-Key"), nil },
	} {
		f = &fakeRequester{result: &Result{Granted: 1}}
		rec, _ = serve(t, f, MiddlewareOptions{Resource: &penalty, Domain: domain})
		require.Equal(t, http.StatusBadRequest, rec.Code, name)
		require.Empty(t, f.calls, name)
	}

	// The hook chooses: here 401, with the cause.
	var got error
	f = &fakeRequester{result: &Result{Granted: 1}}
	rec, _ = serve(t, f, MiddlewareOptions{Resource: &penalty,
		Domain: func(*http.Request) (string, error) { return "", errors.New("no user") },
		OnBadRequest: func(w http.ResponseWriter, _ *http.Request, err error) {
			got = err
			w.WriteHeader(http.StatusUnauthorized)
		},
		OnError: func(http.ResponseWriter, *http.Request, error) { t.Fatal("OnError called for a missing domain") },
	})
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.ErrorIs(t, got, ErrNoDomain)
	require.ErrorContains(t, got, "no user")
	require.Empty(t, f.calls)

	// Or lets such requests through unlimited.
	f = &fakeRequester{result: &Result{Granted: 1}}
	mw, err := middleware(f, MiddlewareOptions{Resource: &penalty,
		Domain:       func(*http.Request) (string, error) { return "", nil },
		OnBadRequest: func(w http.ResponseWriter, r *http.Request, _ error) { _, _ = w.Write([]byte("anonymous")) },
	})
	require.NoError(t, err)
	rec = httptest.NewRecorder()
	mw(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, "anonymous", rec.Body.String())

	got = nil
	f = &fakeRequester{result: &Result{Granted: 1}}
	rec, _ = serve(t, f, MiddlewareOptions{Resource: &penalty, Hits: func(*http.Request) int64 { return 0 },
		OnBadRequest: func(w http.ResponseWriter, _ *http.Request, err error) {
			got = err
			w.WriteHeader(http.StatusUnprocessableEntity)
		}})
	require.Equal(t, http.StatusUnprocessableEntity, rec.Code)
	require.ErrorIs(t, got, ErrInvalid)
	require.Empty(t, f.calls, "a request costing 0 hits is a bug, not a free pass")

	// An argument error from the limiter (a hit count it refuses) is a bad request too.
	f = &fakeRequester{err: invalid("max %d is outside", MaxCount+1)}
	rec, _ = serve(t, f, MiddlewareOptions{Resource: &penalty, Hits: func(*http.Request) int64 { return MaxCount + 1 }})
	require.Equal(t, http.StatusBadRequest, rec.Code)

	_, err = middleware(f, MiddlewareOptions{})
	require.ErrorIs(t, err, ErrInvalid, "nil resource")
	_, err = middleware(f, MiddlewareOptions{Resource: &penalty, MaxWait: -1})
	require.ErrorIs(t, err, ErrInvalid)
}

// When HARD or GLOBAL rejects, RateLimit leads with that limit and its t, not with a
// tier that still has room.
func TestMiddlewareHardAndGlobalHeaders(t *testing.T) {
	res := penalty // 5/1s, 50/5s, hard 20
	res.Global = 1000
	cases := []struct {
		name   string
		result Result
		want   string
	}{
		{"hard", Result{Granted: 0, Tier: 1, TierLimit: 5, TierHits: 2, DomainHits: 20, GlobalHits: 300,
			RetryAfter: 400 * time.Millisecond}, `"hard";r=0;t=1, "t1";r=3, "global";r=700`},
		{"global", Result{Granted: 0, Tier: 1, TierLimit: 5, TierHits: 2, DomainHits: 3, GlobalHits: 1000,
			RetryAfter: 2500 * time.Millisecond}, `"global";r=0;t=3, "t1";r=3, "hard";r=17`},
		{"tier", Result{Granted: 0, Tier: 1, TierLimit: 5, TierHits: 5, DomainHits: 5, GlobalHits: 10,
			RetryAfter: 900 * time.Millisecond}, `"t1";r=0;t=1, "hard";r=15, "global";r=990`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.result
			r.explain(&res, 1, 1) // what the Limiter does with every answer
			f := &fakeRequester{result: &r}
			rec, _ := serve(t, f, MiddlewareOptions{Resource: &res})
			require.Equal(t, http.StatusTooManyRequests, rec.Code)
			require.Equal(t, c.want, rec.Header().Get(HeaderRateLimit))
			require.Equal(t, strings.TrimPrefix(strings.Split(strings.Split(c.want, ";t=")[1], ",")[0], ""), rec.Header().Get(HeaderRetryAfter))
		})
	}
}

func TestPolicyFieldEdgeCases(t *testing.T) {
	closed := Resource{Name: "x", Closed: true, Hard: 4}
	require.Equal(t, `"closed";q=0;w=1, "hard";q=4;w=1`, policyField(&closed))
	require.Equal(t, `"closed";r=0, "hard";r=4`, limitField(&closed, &Result{Granted: 0, RetryAfter: Never}))
	short := Simple("x", 3, 1500*time.Millisecond)
	require.Equal(t, `"t1";q=3;w=2`, policyField(short), "windows round up to whole seconds")
	tiny := Simple("x", 3, time.Millisecond)
	require.Equal(t, `"t1";q=3;w=1`, policyField(tiny), "w is at least 1")
	require.Equal(t, int64(0), ceilSeconds(0))
	require.Equal(t, int64(1), ceilSeconds(time.Millisecond))
	require.Equal(t, int64(1), ceilSeconds(time.Second))
	require.Equal(t, int64(2), ceilSeconds(time.Second+time.Millisecond))
}

// RateLimit-Policy lists every window: tiers, the per-second caps, and each cap over
// another window, per domain ("cap-...") and resource-wide ("global-...").
func TestPolicyFieldCaps(t *testing.T) {
	res := Resource{Name: "api", Tiers: []Tier{
		{Limit: 10, Window: time.Second, Active: time.Second},
		{Limit: 50, Window: 5 * time.Second, Active: 5 * time.Second, Cooldown: 15 * time.Second},
	}, Hard: 20, Caps: []Cap{{1000, time.Hour}, {10000, 24 * time.Hour}, {30, 1500 * time.Millisecond}},
		Global: 5000, GlobalCaps: []Cap{{2000000, 24 * time.Hour}}}
	require.Equal(t, `"t1";q=10;w=1, "t2";q=50;w=5, "hard";q=20;w=1, "cap-1h";q=1000;w=3600, "cap-1d";q=10000;w=86400, "cap-1500ms";q=30;w=2, `+
		`"global";q=5000;w=1, "global-1d";q=2000000;w=86400`, policyField(&res))
	// Per-second caps written as caps are "hard" and "global", in their place.
	res = Resource{Name: "api", Tiers: res.Tiers[:1], Caps: []Cap{{1000, time.Hour}, {20, time.Second}}, GlobalCaps: []Cap{{9, time.Second}}}
	require.Equal(t, `"t1";q=10;w=1, "cap-1h";q=1000;w=3600, "hard";q=20;w=1, "global";q=9;w=1`, policyField(&res))
	closed := Resource{Name: "x", Closed: true, Caps: []Cap{{5, time.Minute}}}
	require.Equal(t, `"closed";q=0;w=1, "cap-1m";q=5;w=60`, policyField(&closed))
}

// RateLimit on answers under caps: the windows the reply counts, and the cap that
// rejected first, with its t, when the reply singles it out.
func TestMiddlewareCapsHeaders(t *testing.T) {
	tiers := []Tier{{Limit: 5, Window: time.Second, Active: time.Second}}
	one := Resource{Name: "api", Tiers: tiers, Hard: 20, Caps: []Cap{{100, time.Hour}}, GlobalCaps: []Cap{{1000, 24 * time.Hour}}}
	two := Resource{Name: "api", Tiers: tiers, Caps: []Cap{{100, time.Hour}, {500, 24 * time.Hour}}, Global: 50}
	cases := []struct {
		name       string
		res        *Resource
		result     Result
		code       int
		rateLimit  string
		retryAfter string
	}{
		{"granted", &one, Result{Granted: 1, Tier: 1, TierLimit: 5, TierHits: 2, DomainHits: 2, GlobalHits: 7},
			http.StatusOK, `"t1";r=3, "hard";r=18`, ""},
		{"the hour cap rejected", &one, Result{Tier: 1, TierLimit: 5, TierHits: 2, DomainHits: 2, GlobalHits: 7, HardLimited: true,
			RetryAfter: 1800 * time.Second}, http.StatusTooManyRequests, `"cap-1h";r=0;t=1800, "t1";r=3, "hard";r=18`, "1800"},
		{"the global day cap rejected", &one, Result{Tier: 1, TierLimit: 5, TierHits: 2, DomainHits: 2, GlobalHits: 7, GlobalLimited: true,
			RetryAfter: 7200*time.Second + time.Millisecond}, http.StatusTooManyRequests, `"global-1d";r=0;t=7201, "t1";r=3, "hard";r=18`, "7201"},
		{"one of two caps rejected: no item carries t", &two, Result{Tier: 1, TierLimit: 5, TierHits: 2, DomainHits: 2, GlobalHits: 7, HardLimited: true,
			RetryAfter: 1800 * time.Second}, http.StatusTooManyRequests, `"t1";r=3, "global";r=43`, "1800"},
		{"a cap that can never grant", &one, Result{Tier: 1, TierLimit: 5, TierHits: 0, DomainHits: 0, GlobalHits: 0, HardLimited: true,
			RetryAfter: Never}, http.StatusTooManyRequests, `"cap-1h";r=0, "t1";r=5, "hard";r=20`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.result
			r.explain(c.res, 1, 1) // what the Limiter does with every answer
			rec, _ := serve(t, &fakeRequester{result: &r}, MiddlewareOptions{Resource: c.res})
			require.Equal(t, c.code, rec.Code)
			require.Equal(t, c.rateLimit, rec.Header().Get(HeaderRateLimit))
			require.Equal(t, c.retryAfter, rec.Header().Get(HeaderRetryAfter))
			require.Equal(t, policyField(c.res), rec.Header().Get(HeaderRateLimitPolicy))
		})
	}
}
