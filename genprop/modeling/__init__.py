"""The model: backbone + SCE + MPD + content gate, the frozen codec and encoders, expert routing."""
