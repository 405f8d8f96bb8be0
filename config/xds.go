package config

import "time"

// XDS is the xds server's own configuration (DESIGN §8). The xds owner
// extends this struct, its bindings, defaults and validate.
type XDS struct {
	// ResyncInterval is the periodic full rebuild from Postgres, the
	// safety net behind LISTEN/NOTIFY (DESIGN §8).
	ResyncInterval Duration `json:"resync_interval,omitempty"`
}

func (x *XDS) defaults() { x.ResyncInterval = Duration(5 * time.Minute) }

func (x *XDS) bindings() []Binding {
	return []Binding{
		durVar("xds.resync_interval", "periodic full resync from the database", &x.ResyncInterval),
	}
}

func (x *XDS) validate(c *Config, v *validator) {
	v.between("xds.resync_interval", x.ResyncInterval, time.Second, 24*time.Hour)
}
