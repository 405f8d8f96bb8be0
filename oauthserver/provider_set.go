package oauthserver

// SetProvider plugs in the provider (second-level) flow after New. It
// exists because the flow needs the *Server it belongs to (to issue the
// first-level code once the grant is stored), so it cannot always be built
// before Options. Call it before the server handles requests; it is not
// synchronized with request handling.
func (s *Server) SetProvider(p ProviderFlow) { s.provider = p }
