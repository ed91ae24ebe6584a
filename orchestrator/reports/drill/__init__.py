"""The reports of a drill and of a rehearsal: their words in Vietnamese and English
(:mod:`.labels`), their pictures as inline SVG (:mod:`.svg`), and their HTML (:mod:`.html`)."""
