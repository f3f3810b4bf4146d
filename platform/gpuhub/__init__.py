"""gpuhub"""
