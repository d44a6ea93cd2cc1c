"""chainforget.engine"""
