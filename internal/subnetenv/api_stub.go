package subnetenv

// THIS FILE HOLDS THE AGREED SIGNATURES; the helper replaces the bodies.

// Marshal renders flannel's exact lines and order.
func Marshal(e Env) []byte { panic("TODO") }

// Write writes the file atomically (temp file in the same directory, fsync,
// rename), mode 0644, creating the directory (0755) if needed.
func Write(path string, e Env) error { panic("TODO") }

// Read parses a subnet.env. A missing file yields an error wrapping
// fs.ErrNotExist. Unknown keys are ignored; malformed values are errors that
// name the key and the file.
func Read(path string) (Env, error) { panic("TODO") }
