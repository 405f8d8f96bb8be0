package oauthserver

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"mcpgw/domain"
	"mcpgw/store"
)

// tokenFacts is everything a gateway JWT asserts (DESIGN §4).
type tokenFacts struct {
	Ref           domain.RouteRef
	UserID        string
	ClientID      string
	Scopes        []string
	InstanceID    string
	ConfigVersion int64
}

// mint signs a gateway JWT with the current key: RS256, kid in the header,
// every claim of DESIGN §4 in domain.Claims (the type extauthz verifies).
func (s *Server) mint(f tokenFacts, now time.Time) (string, time.Duration, error) {
	set := s.keys.Load()
	ttl := s.accessTTL
	c := domain.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.issuer,
			Subject:   f.UserID,
			Audience:  jwt.ClaimStrings{f.Ref.URL(s.publicBase)},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        store.NewID(),
		},
		Scope:            domain.JoinScope(f.Scopes),
		ClientID:         f.ClientID,
		MCPID:            f.Ref.MCPID(),
		OwnerScope:       string(f.Ref.Scope),
		OwnerID:          f.Ref.OwnerID,
		ConfigID:         f.Ref.ConfigID,
		RouteKey:         f.Ref.Key,
		InstanceID:       f.InstanceID,
		ExecutionContext: f.Ref.ExecutionContext(),
		ConfigVersion:    f.ConfigVersion,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	t.Header["kid"] = set.Current.ID
	signed, err := t.SignedString(set.Current.Private)
	if err != nil {
		return "", 0, fmt.Errorf("sign gateway token: %w", err)
	}
	return signed, ttl, nil
}

var errBadToken = errors.New("invalid token")

// parseGatewayToken verifies one of our own JWTs (for userinfo): RS256
// only, a kid we publish, our issuer, not expired. The audience is not
// checked here: userinfo serves any of our tokens that carries profile.
func (s *Server) parseGatewayToken(raw string, now time.Time) (*domain.Claims, error) {
	set := s.keys.Load()
	var c domain.Claims
	_, err := jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		pk, ok := set.PublicKey(kid)
		if !ok {
			return nil, errBadToken
		}
		return pk, nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithIssuer(s.issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(30*time.Second),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return nil, errBadToken
	}
	return &c, nil
}
