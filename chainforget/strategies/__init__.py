"""chainforget.strategies"""
