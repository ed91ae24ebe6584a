"""The archive of retired systems: a catalogue per system, find, get and the page."""
