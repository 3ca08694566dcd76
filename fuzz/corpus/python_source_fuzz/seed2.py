class A:
    def f(self):
        return 'it''s' + f"{x}" # c
