package envoystandin

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// headerList models Envoy's header map: ordered entries with lower-case
// names, pseudo headers (":authority", ":path", ":method", ":scheme")
// first, repeated names allowed.
type headerList []hdr

type hdr struct{ k, v string }

func (h headerList) get(k string) (string, bool) {
	for _, e := range h {
		if e.k == k {
			return e.v, true
		}
	}
	return "", false
}

func (h headerList) has(k string) bool {
	_, ok := h.get(k)
	return ok
}

func (h *headerList) del(k string) {
	out := (*h)[:0]
	for _, e := range *h {
		if e.k != k {
			out = append(out, e)
		}
	}
	*h = out
}

// set replaces every entry named k by one entry (Envoy's setCopy).
func (h *headerList) set(k, v string) {
	for i, e := range *h {
		if e.k == k {
			(*h)[i].v = v
			rest := (*h)[i+1:]
			kept := rest[:0]
			for _, r := range rest {
				if r.k != k {
					kept = append(kept, r)
				}
			}
			*h = (*h)[:i+1+len(kept)]
			return
		}
	}
	h.add(k, v)
}

// add appends another entry (Envoy's addCopy).
func (h *headerList) add(k, v string) { *h = append(*h, hdr{k, v}) }

// appendComma joins v onto the first existing entry with "," or adds it
// (Envoy's appendCopy).
func (h *headerList) appendComma(k, v string) {
	for i, e := range *h {
		if e.k == k {
			(*h)[i].v = e.v + "," + v
			return
		}
	}
	h.add(k, v)
}

// merged returns the headers as a map with repeated names joined by ",",
// as Envoy fills AttributeContext.HttpRequest.headers.
func (h headerList) merged() map[string]string {
	m := make(map[string]string, len(h))
	for _, e := range h {
		if old, ok := m[e.k]; ok {
			m[e.k] = old + "," + e.v
		} else {
			m[e.k] = e.v
		}
	}
	return m
}

// applyOption applies one HeaderValueOption as Envoy's ext_authz filter
// does.
//
// Envoy docs: config.core.v3.HeaderValueOption — append_action
// APPEND_IF_EXISTS_OR_ADD (the default: add another value), ADD_IF_ABSENT,
// OVERWRITE_IF_EXISTS_OR_ADD, OVERWRITE_IF_EXISTS; the deprecated "append"
// boolean, when present, wins: true joins onto the existing value, false
// overwrites. (ext_authz documents that "append" defaults to false in
// OkHttpResponse; since append_action exists, an unset append with the
// default append_action adds a value, so authorization servers that mean
// to replace a header must say OVERWRITE_IF_EXISTS_OR_ADD.)
func (h *headerList) applyOption(o *corev3.HeaderValueOption) {
	k := strings.ToLower(o.GetHeader().GetKey())
	v := o.GetHeader().GetValue()
	if v == "" && len(o.GetHeader().GetRawValue()) > 0 {
		v = string(o.GetHeader().GetRawValue())
	}
	if o.GetAppend() != nil {
		if o.GetAppend().GetValue() {
			h.appendComma(k, v)
		} else {
			h.set(k, v)
		}
		return
	}
	switch o.GetAppendAction() {
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		if !h.has(k) {
			h.add(k, v)
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
		h.set(k, v)
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if h.has(k) {
			h.set(k, v)
		}
	default: // APPEND_IF_EXISTS_OR_ADD
		h.add(k, v)
	}
}

// validHeader reports whether a mutation is a well-formed HTTP field
// (ext_authz validate_mutations).
func validHeader(k, v string) bool {
	if k == "" {
		return false
	}
	name := strings.TrimPrefix(k, ":")
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return !strings.ContainsAny(v, "\r\n\x00")
}

// hopByHop are the connection-specific headers Envoy never forwards.
//
// Envoy docs: HTTP header manipulation — Envoy removes connection,
// keep-alive, proxy-connection, transfer-encoding and upgrade (without an
// upgrade config); "te" is kept only as "trailers".
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true,
	"transfer-encoding": true, "upgrade": true, "te": true,
}
