import generator.git as g

def test_x() -> None:
    assert g.f()
