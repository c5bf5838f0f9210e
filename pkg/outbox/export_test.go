package outbox

// WithMaxUnsure replaces maxUnsure, so a test reaches the bound with a few
// documents.
func WithMaxUnsure(n int) Option {
	return func(r *Relay) {
		if n > 0 {
			r.maxUnsure = n
		}
	}
}

// Unsure is how many documents the relay holds for a read back.
func (r *Relay) Unsure() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.unsure)
}
