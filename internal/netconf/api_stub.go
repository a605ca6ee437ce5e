package netconf

// THIS FILE HOLDS THE AGREED SIGNATURES; the netconf helper replaces the
// bodies without changing them.

// Parse decodes a config (encoding/json semantics), fills flannel's defaults
// (EnableIPv4 true, SubnetLen, SubnetMin/Max, Backend type "udp" when the
// Backend object is absent, as flannel does) and validates it. Errors name
// the field and the value at fault.
func Parse(data []byte) (*Config, error) { panic("TODO") }
