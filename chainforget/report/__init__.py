"""chainforget.report"""
