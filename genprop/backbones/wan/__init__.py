"""The Wan2.x image-to-video family through diffusers (Wan2.1-I2V, Wan2.2-I2V-A14B, Wan2.2-TI2V)."""
