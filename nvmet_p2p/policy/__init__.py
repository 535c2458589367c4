"""What to export and where its p2p memory comes from: profiles, their schema, placement.

Pure logic that joins both sides' data (an inventory and a target state).
"""
