package envoystandin

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// onlyFields fails when m sets any field outside allowed, or carries unknown
// fields. It is how the stand-in stays strict: a field it does not implement
// is never silently ignored, the whole update is NACKed instead, so a config
// that a real Envoy would interpret differently cannot pass e2e by accident.
//
// Fields that have no observable effect on traffic (stat prefixes, names)
// are listed explicitly at each call site.
func onlyFields(where string, m proto.Message, allowed ...string) error {
	if m == nil {
		return nil
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return nil
	}
	if len(r.GetUnknown()) > 0 {
		return fmt.Errorf("%s: unknown fields present (newer proto than the stand-in understands)", where)
	}
	var bad []string
	r.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, string(fd.Name())) {
			bad = append(bad, string(fd.Name()))
		}
		return true
	})
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("%s: field(s) %s not supported by the Envoy stand-in (allowed: %s)",
			where, strings.Join(bad, ", "), strings.Join(allowed, ", "))
	}
	return nil
}

// unpack decodes a typed_config Any into exactly one of the expected message
// types, refusing any other type URL.
func unpack[T proto.Message](where string, a *anypb.Any, newT func() T) (T, error) {
	var zero T
	if a == nil {
		return zero, fmt.Errorf("%s: typed_config is required", where)
	}
	m := newT()
	want := "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
	if a.GetTypeUrl() != want {
		return zero, fmt.Errorf("%s: unsupported type %q (want %q)", where, a.GetTypeUrl(), want)
	}
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return zero, fmt.Errorf("%s: decode %s: %w", where, want, err)
	}
	if v, ok := any(m).(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return zero, fmt.Errorf("%s: %w", where, err)
		}
	}
	return m, nil
}

// typeURLOf returns the Any type URL of a message type.
func typeURLOf(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}
