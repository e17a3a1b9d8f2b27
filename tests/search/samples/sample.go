package main

type Server struct {
	Addr string
}

type Handler interface {
	Serve(req string) error
}

type ID int

func (s *Server) Start() error {
	return nil
}

func main() {
}
