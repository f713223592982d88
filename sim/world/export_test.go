package world

// StepKind names a step as messages do: "pos pay", "await approved", "wait 1s", …
func StepKind(s *Step) string { return s.kind() }
