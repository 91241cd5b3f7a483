"""The segmentation service: cross-source segments compiled to SQL, kept current as profiles
change and as time passes, synced to platforms as membership deltas."""
