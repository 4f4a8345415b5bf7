"""Plain step-by-step float64 references written from the equations; they import nothing from
`seqcast.layers`, so a layer and its reference can never share a bug."""
