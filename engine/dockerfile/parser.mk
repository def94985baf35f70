# engine/dockerfile parser + instructions (owned by the parser work).
