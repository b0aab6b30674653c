module dashnas.dev/dashnas

go 1.19
