"""chainforget.metrics"""
