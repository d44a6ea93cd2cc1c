"""chainforget.benchmark"""
